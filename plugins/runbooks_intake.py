"""Incident intake: the webhook receiver, mounted in Airflow's API server under ``/runbooks``.

Thin on purpose: the receiver lives in ``include/intake/`` (docs/intake.md) and is built on its first
request, so importing this file (which every Airflow process does) costs next to nothing.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.intake.asgi import LazyApp


class RunbooksIntakePlugin(AirflowPlugin):
    name = "runbooks_intake"
    fastapi_apps = [
        {"app": LazyApp("include.intake.app:create_app"), "url_prefix": "/runbooks", "name": "Runbooks incident intake"},
    ]
