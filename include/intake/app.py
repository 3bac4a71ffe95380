"""The webhook receiver as a FastAPI app, mounted by ``plugins/runbooks_intake.py`` under ``/runbooks``.

    POST /runbooks/hooks/alertmanager   Alertmanager webhook (payload version 4), bearer token
    POST /runbooks/hooks/pagerduty      PagerDuty V3 webhook, X-PagerDuty-Signature
    POST /runbooks/hooks/generic        any JSON sender, X-Runbooks-Timestamp + X-Runbooks-Signature
    GET  /runbooks/health               routing file loaded? which sources have a secret? (never the secret)

A new incident is answered once it is durably in the outbox (``state: pending``); its DAG run, with the
run id answered, is created right after (include/intake/outbox.py). The body is read in chunks and refused with 413 as soon as it passes the limit (also when a
Content-Length announces more), so nothing oversized is buffered or parsed. The work (database, audit
file) runs in the receiver's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from include.intake.credentials import SecretStore
from include.intake.events import SOURCES
from include.intake.routing import RouteStore, RoutingError
from include.intake.runs import AirflowLauncher, Drainer, Launcher
from include.intake.service import Answer, Delivery, Intake

log = logging.getLogger("runbooks.intake")
#: Deliveries handled at once per api-server worker (the rest wait for a thread).
WORKER_THREADS = 64

_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: `started` (new run), `duplicate` (the incident's run exists) or `ignored`."},
    400: {"description": "Malformed body, wrong payload shape, or a conf the runbook's params refuse."},
    401: {"description": "Missing or bad bearer token / signature, or a stale timestamp."},
    404: {"description": "Unknown source."},
    413: {"description": "Body larger than the limit (1 MiB)."},
    503: {"description": "Routing file invalid, runbook not loaded yet, or database busy: retry (Retry-After)."},
}


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` bytes (declared or actual)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _response(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def default_drainer() -> Drainer:
    """``RUNBOOKS_INTAKE_DRAINER``: ``process`` (default), ``thread`` or ``none`` (see include.intake.outbox)."""
    value = os.environ.get("RUNBOOKS_INTAKE_DRAINER", "process").strip().lower()
    if value not in ("process", "thread", "none"):
        raise ValueError(f"RUNBOOKS_INTAKE_DRAINER must be process, thread or none, not {value!r}")
    return cast(Drainer, value)


def create_app(intake: Intake | None = None, launcher: Launcher | None = None) -> FastAPI:
    """The receiver app (its own :class:`Intake` on Airflow's database unless one is given).

    Built without a launcher, it starts the outbox drainer (:mod:`include.intake.outbox`), which first
    creates the runs of incidents accepted before a restart.
    """
    intake = intake or Intake(RouteStore(), SecretStore(), launcher or AirflowLauncher(default_drainer()))
    app = FastAPI(
        title="Runbooks incident intake",
        version="1",
        description="Authenticated alert webhooks that start the right runbook exactly once per incident.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.intake = intake
    # The receiver's own threads, not the API server's shared pool (anyio's, 40 threads): deliveries waiting
    # for their turn to write never hold up duplicates, nor Airflow's own endpoints.
    pool = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="intake")

    async def run_in_threadpool(function: Any, *args: Any) -> Answer:
        answer: Answer = await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        return answer

    @app.post("/hooks/{source}", status_code=202, responses=_ANSWERS, summary="Receive an alert webhook")
    async def receive(source: str, request: Request) -> JSONResponse:
        client = request.client.host if request.client else None
        if source not in SOURCES:
            return _response(await run_in_threadpool(intake.handle, Delivery(source, b"", {}, client)))
        body = await read_limited(request, intake.max_body)
        if body is None:
            return _response(await run_in_threadpool(intake.too_large, source, client))
        headers = {k.lower(): v for k, v in request.headers.items()}
        return _response(await run_in_threadpool(intake.handle, Delivery(source, body, headers, client)))

    @app.get("/health", summary="Routing file and secrets state (unauthenticated: no secret, no path, no error text)")
    def health() -> JSONResponse:
        try:
            routing: dict[str, Any] = {"ok": True, "routes": len(intake.routes.get().routes)}
        except RoutingError:  # the error itself is logged, and answered to authenticated senders only
            routing = {"ok": False, "routes": 0}
        sources = {s: {"configured": bool(intake.secrets.get(s).values)} for s in SOURCES}
        return JSONResponse({"routing": routing, "sources": sources}, status_code=200 if routing["ok"] else 503)

    return app
