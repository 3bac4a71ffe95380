"""Incident intake: the webhook receiver, mounted in Airflow's API server under ``/runbooks``.

Thin on purpose: the receiver lives in ``include/intake/`` (docs/intake.md) and is built when the API server
starts (a pass-through root middleware triggers it; only the API server instantiates those), so importing
this file (which every Airflow process does) costs next to nothing.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.intake.asgi import BuildAtStartup, LazyApp

RECEIVER = LazyApp("include.intake.app:create_app")


class RunbooksIntakePlugin(AirflowPlugin):
    name = "runbooks_intake"
    fastapi_apps = [
        {"app": RECEIVER, "url_prefix": "/runbooks", "name": "Runbooks incident intake"},
    ]
    fastapi_root_middlewares = [
        {"middleware": BuildAtStartup, "args": [], "kwargs": {"lazy": RECEIVER}, "name": "Runbooks intake start-up"},
    ]
