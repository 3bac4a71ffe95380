"""An ASGI app built on its first request (stdlib only), so the plugin file imports in microseconds.

Airflow imports ``plugins/`` in several processes (scheduler, dag-processor, workers, triggerer); only the
API server ever serves the receiver. Building it (FastAPI, pydantic models, the routing file) on the
first request keeps every other process from paying for it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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

    def __repr__(self) -> str:
        return f"LazyApp({self.factory!r})"
