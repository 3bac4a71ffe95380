"""An ASGI app built on its first request (stdlib only), so the plugin file imports in microseconds.

Airflow imports ``plugins/`` in several processes (scheduler, dag-processor, workers, triggerer); only the
API server ever serves the receiver. Building it (FastAPI, pydantic models, the routing file) on the
first request keeps every other process from paying for it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger("runbooks.intake")


class LazyApp:
    """Calls ``factory`` (``"package.module:function"``) once, on the first ASGI call, and delegates to it."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    def build(self) -> ASGIApp:
        """The app (built now if it was not yet)."""
        with self._lock:
            if self._app is None:
                module, _, name = self.factory.partition(":")
                app: ASGIApp = getattr(importlib.import_module(module), name)()
                self._app = app
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or self.build()
        await app(scope, receive, send)

    def build_in_background(self) -> None:
        """Build the app in a daemon thread now (errors are logged; the first request builds it again)."""

        def build() -> None:
            try:
                self.build()
            except Exception:
                log.exception("intake: building %s at start-up failed", self.factory)

        threading.Thread(target=build, name="intake-build", daemon=True).start()

    def __repr__(self) -> str:
        return f"LazyApp({self.factory!r})"


class BuildAtStartup:
    """Pass-through ASGI middleware for the API server's root app: builds ``lazy`` when the server starts.

    Airflow instantiates a plugin's root middlewares when its API server app starts (only there, once per
    worker); a mounted app that is not a FastAPI instance gets no lifespan event of its own. Building the
    receiver then, not on the first delivery, starts its outbox drainer at start-up: the runs of incidents
    accepted before a crash or restart are created without waiting for the next alert.
    """

    def __init__(self, app: ASGIApp, lazy: LazyApp) -> None:
        self.app = app
        lazy.build_in_background()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
