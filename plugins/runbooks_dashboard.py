"""The runbooks dashboard: a page in the Airflow UI's navigation, served by the API server under
``/runbooks-dashboard/`` (docs/dashboard.md).

Thin on purpose: the app lives in ``include/dashboard/`` and is built on its first request, so importing this
file (which every Airflow process does) costs next to nothing. Only signed-in users see the page: it depends
on the API server's own authentication (include/dashboard/app.py).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.intake.asgi import LazyApp

#: Same value as include.dashboard.app.MOUNT (not imported here: that module imports FastAPI and Airflow's API).
MOUNT = "/runbooks-dashboard"


class RunbooksDashboardPlugin(AirflowPlugin):
    name = "runbooks_dashboard"
    fastapi_apps = [
        {"app": LazyApp("include.dashboard.app:create_app"), "url_prefix": MOUNT, "name": "Runbooks dashboard"},
    ]
    # A top-level entry of the UI's navigation; the UI shows the page in a frame at /plugin/runbooks-dashboard.
    external_views = [
        {"name": "Runbooks dashboard", "href": f"{MOUNT}/", "destination": "nav", "url_route": "runbooks-dashboard",
         "nav_top_level": True},
    ]
