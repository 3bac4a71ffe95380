"""The dashboard's FastAPI app, mounted by plugins/runbooks_dashboard.py in Airflow's API server.

Only signed-in users: the page depends on Airflow's own ``get_user`` (the UI's ``_token`` cookie, or a
bearer token from ``POST /auth/token``), so the API server's auth manager decides. Without a valid token a
browser is sent to the auth manager's login page (then back here); any other client gets Airflow's 401/403.
A user sees the sections and rows of the runbooks the auth manager lets them read (registry.py).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

# Imported when the API server builds the app on its first request (the plugin file imports none of this).
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from include.dashboard import approvals, data, page
from include.dashboard.registry import RUNBOOKS

#: Where the plugin mounts the app (plugins/runbooks_dashboard.py uses this value).
MOUNT = "/runbooks-dashboard"


def ui_root(request: Request) -> str:
    """The Airflow UI's root path as this request sees it (the mount point's parent)."""
    root = str(request.scope.get("root_path") or "")
    return root[: -len(MOUNT)] if root.endswith(MOUNT) else ""


def readable_runbooks(user: BaseUser) -> set[str]:
    """The registry's runbooks the auth manager lets ``user`` read."""
    return set(get_auth_manager().filter_authorized_dag_ids(dag_ids=set(RUNBOOKS), user=user, method="GET"))


def _wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def create_app() -> FastAPI:
    """The app: ``GET /`` is the page; ``GET /data.json`` the same figures as JSON."""
    app = FastAPI(title="Runbooks dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (401, 403) and _wants_html(request):
            back = f"{ui_root(request)}{MOUNT}/" + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(get_auth_manager().get_url_login(next_url=back), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    def selection(resource: str, runbook: str, since: str, until: str, everything: str) -> data.AuditFilter:
        try:
            return data.AuditFilter(resource=resource, runbook=runbook, since=since, until=until,
                                    everything=everything.lower() in ("on", "true", "1", "yes"))
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"since / until must be dates (YYYY-MM-DD): {exc}") from None

    def gather(request: Request, user: BaseUser, chosen: data.AuditFilter) -> dict[str, Any]:
        allowed = readable_runbooks(user)
        root = ui_root(request)

        def pending(names: Collection[str] | None) -> list[dict[str, Any]]:
            return approvals.pending(names, ui_root=root)

        return page.gather(allowed, chosen, pending, root)

    @app.get("/", response_class=HTMLResponse)
    def dashboard(
        request: Request, user: GetUserDep, resource: Annotated[str, Query(max_length=500)] = "",
        runbook: Annotated[str, Query(max_length=250)] = "", since: str = "", until: str = "", everything: str = "",
    ) -> HTMLResponse:
        chosen = selection(resource, runbook, since, until, everything)
        view = gather(request, user, chosen)
        return HTMLResponse(page.render(view, chosen, user.get_name()))

    @app.get("/data.json")
    def figures(
        request: Request, user: GetUserDep, resource: Annotated[str, Query(max_length=500)] = "",
        runbook: Annotated[str, Query(max_length=250)] = "", since: str = "", until: str = "", everything: str = "",
    ) -> dict[str, Any]:
        return gather(request, user, selection(resource, runbook, since, until, everything))

    return app
