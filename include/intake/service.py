"""One delivery from start to answer: authenticate, parse, route, start (or find) the run, record it.

Framework-free (the FastAPI app in :mod:`include.intake.app` only reads the body and writes the answer),
so every decision is testable on its own. The order of checks, and the answers:

1. unknown source -> 404
2. body over :data:`MAX_BODY_BYTES` -> 413 (the app enforces it while reading, before any parsing)
3. missing / bad token or signature, stale timestamp -> 401 (the body is not parsed before this)
4. not JSON, not the source's payload shape, a conf template the event cannot fill, or a conf the
   runbook's params refuse -> 400 (nothing started)
5. the routing file is invalid, the runbook is not loaded in Airflow yet, the metadata database is busy
   -> 503 with ``Retry-After`` (a condition of the receiver, not of the input: the sender retries)
6. otherwise 202: ``started`` (a new incident: durably accepted in the outbox with its run id, ``state``
   ``pending``; the run with that id is created right after, :mod:`include.intake.outbox`), ``duplicate``
   (the incident is known: nothing started; ``state`` is its run's, or ``pending`` until it exists) or
   ``ignored`` (resolved, not an incident, or no route fits: the reason is in the answer)

Every delivery, whatever the answer, is one audit record (``include.audit``; step ``intake``, action =
the decision): source, idempotency key, decision, run id, route, reason, time. Never a secret, a
signature or a header.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from include.audit import AuditRecord, Outcome, write_audit
from include.intake import events, signatures
from include.intake.credentials import SecretStore
from include.intake.events import SOURCES, Event, Source
from include.intake.routing import RouteStore, RoutingError, TemplateError, choose, render_conf
from include.intake.runs import ConfRejected, Launched, Launcher, RunbookUnavailable
from include.redaction import scrub

#: The largest body accepted (PagerDuty guarantees delivery up to 55 KB and drops above 256 KB;
#: Alertmanager groups are small unless max_alerts is unset on a huge group).
MAX_BODY_BYTES = 1024 * 1024
RETRY_AFTER_S = 30

Decision = Literal["started", "duplicate", "ignored", "rejected", "unauthorized", "unknown_source", "too_large",
                   "unavailable"]
_OUTCOME: dict[str, Outcome] = {"started": "changed", "duplicate": "unchanged", "ignored": "skipped"}
log = logging.getLogger("runbooks.intake")


@dataclass(frozen=True)
class Delivery:
    """What arrived: the source named by the path, the raw body, the headers (lower-case names)."""

    source: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    client: str | None = None


@dataclass(frozen=True)
class Answer:
    """The HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """A delivery that ends before a run could be started (answered ``status``)."""

    def __init__(self, status: int, decision: Decision, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.decision = decision
        self.message = message
        self.headers = headers or {}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; ``Refused`` (400) for anything else (bad UTF-8, NaN, nesting too deep)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise Refused(400, "rejected", f"malformed JSON body: {reason}") from None
    if not isinstance(value, dict):
        raise Refused(400, "rejected", f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _validation_message(exc: ValidationError, what: str) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "(body)"
        problems.append(f"{where}: {error.get('msg')}")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"not a valid {what} payload: " + "; ".join(problems) + more


def _validate(model: type[BaseModel], data: dict[str, Any], what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Refused(400, "rejected", _validation_message(exc, what)) from None
    except RecursionError:
        raise Refused(400, "rejected", f"not a valid {what} payload: nested too deeply") from None


def to_event(source: Source, data: dict[str, Any]) -> Event:
    """The source's payload as an :class:`Event`; ``Refused`` (400) naming what is wrong."""
    if source == "alertmanager":
        return events.from_alertmanager(_validate(events.AlertmanagerPayload, data, "Alertmanager (version 4)"))
    if source == "pagerduty":
        return events.from_pagerduty(_validate(events.PagerDutyPayload, data, "PagerDuty V3 webhook"))
    try:
        return events.from_generic(_validate(events.GenericPayload, data, "generic"))
    except ValueError as exc:
        raise Refused(400, "rejected", f"not a valid generic payload: {exc}") from None


class Intake:
    """The receiver's logic: :meth:`handle` turns a :class:`Delivery` into an :class:`Answer`."""

    def __init__(
        self,
        routes: RouteStore,
        secrets: SecretStore,
        launcher: Launcher,
        *,
        audit_base: Path | None = None,
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.routes = routes
        self.secrets = secrets
        self.launcher = launcher
        self.audit_base = audit_base
        self.clock = clock
        self.max_body = max_body

    # ---- the steps ---------------------------------------------------------------------------------------
    def source_of(self, name: str) -> Source:
        for source in SOURCES:
            if name == source:
                return source
        raise Refused(404, "unknown_source", f"unknown source {name[:64]!r}; known: {', '.join(SOURCES)}")

    def authenticate(self, source: Source, delivery: Delivery) -> None:
        secrets = self.secrets.get(source)
        headers = delivery.headers
        try:
            if source == "alertmanager":
                signatures.check_bearer(headers.get("authorization"), secrets)
            elif source == "pagerduty":
                signatures.check_pagerduty(headers.get("x-pagerduty-signature"), delivery.body, secrets)
            else:
                signatures.check_generic(headers.get("x-runbooks-timestamp"), headers.get("x-runbooks-signature"),
                                         delivery.body, secrets, now=self.clock())
        except signatures.AuthError as exc:
            challenge = {"WWW-Authenticate": 'Bearer realm="runbooks-intake"'} if source == "alertmanager" else {}
            raise Refused(401, "unauthorized", str(exc), challenge) from None

    def start(self, source: Source, event: Event) -> tuple[dict[str, Any], Launched | None, str, str | None]:
        """Route ``event`` and start (or find) its run: (conf, launched or None, reason, route name)."""
        try:
            table = self.routes.get()
        except RoutingError as exc:
            log.error("intake: routing file invalid: %s", exc)
            raise Refused(503, "unavailable", f"the routing file is invalid: {exc}",
                          {"Retry-After": str(RETRY_AFTER_S)}) from None
        decision = choose(table, event)
        if decision.route is None:
            return {}, None, decision.reason, None
        route = decision.route
        try:
            conf = render_conf(route, event)
        except TemplateError as exc:
            raise Refused(400, "rejected", str(exc)) from None
        assert event.key is not None  # choose() never picks a route for an event without a key
        try:
            launched = self.launcher.launch(route.runbook, event.key, conf, actor=f"intake:{source}")
        except ConfRejected as exc:
            raise Refused(400, "rejected", f"route {route.name}: {exc}") from None
        except RunbookUnavailable as exc:
            raise Refused(503, "unavailable", f"route {route.name}: {exc}", {"Retry-After": str(RETRY_AFTER_S)}) from None
        return conf, launched, decision.reason, route.name

    def too_large(self, source: str, client: str | None) -> Answer:
        """The 413 answer (recorded) for a body the app stopped reading at :attr:`max_body` bytes."""
        message = f"body larger than {self.max_body} bytes"
        self._record(source[:64], "too_large", 413, None, reason=message, client=client)
        return Answer(413, {"decision": "too_large", "detail": message})

    # ---- the whole delivery ------------------------------------------------------------------------------
    def handle(self, delivery: Delivery) -> Answer:
        """Authenticate, parse, route, start; always one audit record; never raises for any input."""
        event: Event | None = None
        source_name = delivery.source[:64]
        try:
            source = self.source_of(delivery.source)
            if len(delivery.body) > self.max_body:
                raise Refused(413, "too_large", f"body larger than {self.max_body} bytes")
            self.authenticate(source, delivery)
            event = to_event(source, parse_json(delivery.body))
            conf, launched, reason, route = self.start(source, event)
        except Refused as refused:
            self._record(source_name, refused.decision, refused.status, event, reason=refused.message,
                         client=delivery.client)
            return Answer(refused.status, {"decision": refused.decision, "detail": refused.message}, refused.headers)
        if launched is None:
            decision: Decision = "ignored"
        else:
            decision = "started" if launched.created else "duplicate"
        body: dict[str, Any] = {
            "decision": decision,
            "run_id": launched.run_id if launched else None,
            "dag_id": launched.dag_id if launched else None,
            "idempotency_key": event.key,
            "route": route,
            "reason": reason,
        }
        if launched is not None:
            body.update(state=launched.state, dry_run=launched.dry_run)
            if launched.warning:
                body["warning"] = launched.warning
        self._record(source_name, decision, 202, event, reason=reason, client=delivery.client, conf=conf,
                     launched=launched, route=route)
        return Answer(202, body)

    def _record(
        self, source: str, decision: Decision, status: int, event: Event | None, *, reason: str, client: str | None,
        conf: Mapping[str, Any] | None = None, launched: Launched | None = None, route: str | None = None,
    ) -> None:
        log.info("intake: %s %s -> %s %s (%s)", source, event.key if event else "-", status, decision,
                 launched.run_id if launched else reason[:200])
        dry_run = launched.dry_run if launched and launched.dry_run is not None else (conf or {}).get("dry_run")
        record = AuditRecord(
            runbook=launched.dag_id if launched else "intake",
            run_id=launched.run_id if launched else "",
            actor=f"intake:{source}",
            step="intake",
            action=decision,
            outcome=_OUTCOME.get(decision, "failed"),
            dry_run=dry_run is True,
            params=dict(conf or {}),
            idempotency_key=event.key if event else None,
            after={
                "http_status": status,
                "route": route,
                "reason": reason[:1000],
                "event_id": event.event_id[:512] if event else None,
                "incident": event.incident[:512] if event and event.incident else None,
                "event_status": event.status if event else None,
                "client": client,
            },
            error=None if status < 300 else scrub(reason[:1000]),
        )
        try:
            write_audit(record, self.audit_base)
        except OSError:  # the run (if any) is in Airflow's database either way: never fail the sender for this
            log.exception("intake: could not write the audit record of %s %s", source, decision)
