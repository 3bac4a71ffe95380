"""Incident intake: authenticated alert webhooks that start the right runbook exactly once per incident.

See docs/intake.md. Modules: ``signatures`` (bearer / HMAC checks), ``credentials`` (secrets from Airflow
connections), ``events`` (payload models, the event shape, idempotency keys), ``routing`` (the routing
file), ``runs`` (finding or accepting the incident's DAG run in Airflow's database), ``outbox`` (accepted
incidents, durable until their run is created by the drainer), ``service`` (one delivery from
start to answer), ``app`` (the FastAPI app), ``asgi`` (the lazily built app the plugin mounts).
Nothing is imported here, so the plugin file stays cheap to import.
"""
