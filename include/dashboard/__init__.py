"""The runbooks dashboard: one page in the Airflow UI for the people who own the clouds (docs/dashboard.md).

``registry`` says which section shows each runbook, ``data`` reads what the runbooks wrote (through their own
modules' read functions), ``approvals`` asks Airflow's metadata DB for pending human-in-the-loop requests,
``page`` renders server-side HTML with inline SVG charts, ``app`` is the FastAPI app the plugin mounts.
"""
