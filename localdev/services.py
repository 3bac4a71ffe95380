"""Two tiny HTTP applications that stand in for a service's primary and standby endpoints, on loopback.

Each side is a stdlib ``http.server`` answering ``GET /healthz`` (200, JSON) and ``GET /`` on its own
loopback address (``127.0.0.2`` / ``127.0.0.3``, so the Route 53 A records can name them) and port. A
control server on ``127.0.0.1`` takes a side down and up for real: ``POST /<side>/down`` closes that side's
listening socket (connections are refused, as in an outage), ``POST /<side>/up`` opens it again,
``GET /status`` tells which sides serve. The service catalog's ``drill.outage`` / ``drill.restore`` name
those URLs, so ``failover_drill`` causes the outage the same way it would call a staging chaos endpoint.

    python -m localdev.services serve [--primary 127.0.0.2:18080] [--standby 127.0.0.3:18080]
                                      [--control 127.0.0.1:18079]

Tests, the demo and the benchmark start them in-process with :class:`LocalServices` (threads).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIDES = ("primary", "standby")


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # a side brought back up rebinds its port at once
    daemon_threads = True


class App:
    """One application endpoint: ``/healthz`` answers 200 while it runs; stopped = connection refused."""

    def __init__(self, service: str, side: str, host: str, port: int) -> None:
        self.service, self.side, self.host, self.port = service, side, host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/", "/healthz"):
                    self.send_error(404)
                    return
                body = json.dumps({"service": app.service, "side": app.side, "ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = _Server((self.host, self.port), self._handler())
            self.port = int(server.server_address[1])  # port 0: the one the system chose
            self._thread = threading.Thread(target=server.serve_forever, name=f"app-{self.side}", daemon=True)
            self._server = server
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            server.shutdown()
            server.server_close()  # the port refuses connections from now on


class LocalServices:
    """A service's primary and standby endpoints plus the control server that takes them down and up."""

    def __init__(self, service: str = "orders", *, primary: tuple[str, int] = ("127.0.0.2", 18080),
                 standby: tuple[str, int] = ("127.0.0.3", 18080), control: tuple[str, int] = ("127.0.0.1", 18079)) -> None:
        self.service = service
        self.apps = {"primary": App(service, "primary", *primary), "standby": App(service, "standby", *standby)}
        self._control_address = control
        self._control: _Server | None = None

    @property
    def control_url(self) -> str:
        assert self._control is not None, "start() first"
        host, port = self._control.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, side: str) -> str:
        return self.apps[side].url

    def status(self) -> dict[str, bool]:
        return {side: app.running for side, app in self.apps.items()}

    def down(self, side: str) -> None:
        self.apps[side].stop()

    def up(self, side: str) -> None:
        self.apps[side].start()

    def _control_handler(self) -> type[BaseHTTPRequestHandler]:
        services = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/status":
                    self._answer(200, services.status())
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) != 2 or parts[0] not in SIDES or parts[1] not in ("down", "up"):
                    self._answer(404, {"error": "POST /<primary|standby>/<down|up>"})
                    return
                (services.down if parts[1] == "down" else services.up)(parts[0])
                self._answer(200, services.status())

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def start(self) -> LocalServices:
        for app in self.apps.values():
            app.start()
        if self._control is None:
            self._control = _Server(self._control_address, self._control_handler())
            threading.Thread(target=self._control.serve_forever, name="app-control", daemon=True).start()
        return self

    def stop(self) -> None:
        for app in self.apps.values():
            app.stop()
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self._control = None

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """``python -m localdev.services serve``: run both endpoints and the control server until SIGTERM / Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--service", default="orders")
    parser.add_argument("--primary", type=_address, default=("127.0.0.2", 18080))
    parser.add_argument("--standby", type=_address, default=("127.0.0.3", 18080))
    parser.add_argument("--control", type=_address, default=("127.0.0.1", 18079))
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalServices(args.service, primary=args.primary, standby=args.standby, control=args.control) as services:
        print(f"{args.service}: primary {services.url('primary')}  standby {services.url('standby')}  "
              f"control {services.control_url}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
