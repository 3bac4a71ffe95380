"""Routing rules as data: which event starts which runbook with which conf (``config/intake/routes.yaml``).

The file is validated when it is loaded (pydantic; every error names the route and the field): an unknown
source or field, a bad regular expression, a conf template that refers to something events do not have,
a route that would start a runbook on a *resolved* event, or a runbook (DAG id) that does not exist in
``dags/`` is refused, and the receiver answers 503 until the file is fixed (senders retry; nothing is lost).

Matching: the first route (in file order) whose ``source``, ``on`` (event status) and ``match`` fit wins;
an event no route fits is accepted and ignored with the reason. Two rules hold whatever the file says:
a resolved event never starts a runbook, and an event that is not about an incident never does either.

    python -m include.intake.routing [FILE]    # validate a routing file (CI, before deploying)
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.intake.events import EVENT_FIELDS, SOURCES, Event, Source
from include.paths import CONFIG_DIR, PROJECT_ROOT

DEFAULT_ROUTES_FILE = CONFIG_DIR / "intake" / "routes.yaml"
#: A DAG id as the runbooks name theirs (the DAG id is the file name).
RUNBOOK_PATTERN = r"^[a-z][a-z0-9_]{0,199}$"
#: The statuses a route may start a runbook on. ``resolved`` is not one of them, by design.
OnStatus = Literal["firing", "updated"]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_.:/-]+))?\}")
_TEMPLATE_KINDS = ("$label", "$labels", "$field", "$format")
#: Conf keys the receiver sets itself.
_RESERVED_CONF = ("idempotency_key",)


class RoutingError(ValueError):
    """The routing file cannot be used; the message names the route and the field."""


class TemplateError(ValueError):
    """A conf template refers to something this event does not have."""


def routes_file() -> Path:
    """``RUNBOOKS_INTAKE_ROUTES_FILE``, default ``config/intake/routes.yaml``."""
    return Path(os.environ.get("RUNBOOKS_INTAKE_ROUTES_FILE", DEFAULT_ROUTES_FILE))


def dags_folder() -> Path:
    """Where the runbooks are: Airflow's ``[core] dags_folder`` from the environment, else ``<project>/dags``."""
    return Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or PROJECT_ROOT / "dags")


def known_runbooks(folder: Path) -> set[str]:
    """DAG ids of the runbooks in ``folder``: ``<id>.py`` whose text declares ``dag_id="<id>"``."""
    found = set()
    for path in folder.glob("*.py"):
        text = path.read_text(errors="replace")
        if re.search(rf"""dag_id\s*=\s*["']{re.escape(path.stem)}["']""", text):
            found.add(path.stem)
    return found


# ---- the file's model ----------------------------------------------------------------------------------
def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _check_template(value: Any, where: str) -> None:
    """Refuse a conf template that could never render (unknown kind, field or placeholder)."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_template(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        kinds = [k for k in value if str(k).startswith("$")]
        if kinds:
            _check_reference(value, kinds, where)
        else:
            for key, item in value.items():
                _check_template(item, f"{where}.{key}")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")


def _check_reference(value: dict[str, Any], kinds: list[str], where: str) -> None:
    options = {"default", "max_length"} if kinds and kinds[0] == "$format" else {"default"}
    if len(kinds) != 1 or kinds[0] not in _TEMPLATE_KINDS or set(value) - {kinds[0], *options}:
        raise ValueError(f"{where}: a template is one of {', '.join(_TEMPLATE_KINDS)} (plus an optional default; "
                         f"$format also max_length), not {sorted(value)}")
    limit = value.get("max_length", 1)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"{where}: max_length must be a positive integer")
    kind, arg = kinds[0], value[kinds[0]]
    if not isinstance(arg, str) or not arg:
        raise ValueError(f"{where}: {kind} takes a non-empty string")
    if kind == "$field" and arg not in EVENT_FIELDS:
        raise ValueError(f"{where}: unknown event field {arg!r}; known: {', '.join(EVENT_FIELDS)}")
    if kind == "$format":
        for match in _PLACEHOLDER.finditer(arg):
            name, sub = match.group(1), match.group(2)
            if not ((name == "labels" and sub) or (name in EVENT_FIELDS and not sub)):
                raise ValueError(f"{where}: unknown placeholder {match.group(0)!r}; use {{labels.<name>}} or "
                                 f"one of {', '.join('{' + f + '}' for f in EVENT_FIELDS)}")


class Match(BaseModel):
    """What an event must have. A value is one string or a list (any of); ``labels_regex`` full-matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[str, list[str]] = Field(default_factory=dict)
    labels_regex: dict[str, str] = Field(default_factory=dict)
    service: list[str] | None = None
    severity: list[str] | None = None
    event_type: list[str] | None = None

    @field_validator("labels", mode="before")
    @classmethod
    def _label_values(cls, value: object) -> object:
        return {k: _one_or_many(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("service", "severity", "event_type", mode="before")
    @classmethod
    def _many(cls, value: object) -> object:
        return _one_or_many(value)

    @field_validator("labels_regex")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        for key, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"labels_regex.{key}: not a regular expression ({exc})") from None
        return value

    def mismatch(self, event: Event) -> str | None:
        """Why ``event`` does not fit (the first reason), or None when it does."""
        for name in ("service", "severity", "event_type"):
            wanted: list[str] | None = getattr(self, name)
            if wanted is not None and event.field_value(name) not in wanted:
                return f"{name} is {event.field_value(name)!r}, not {' / '.join(wanted)}"
        for key, allowed in self.labels.items():
            if event.labels.get(key) not in allowed:
                return f"label {key} is {event.labels.get(key)!r}, not {' / '.join(allowed)}"
        for key, pattern in self.labels_regex.items():
            if not re.fullmatch(pattern, event.labels.get(key, "")):
                return f"label {key} is {event.labels.get(key)!r}, not matching {pattern!r}"
        return None


def _firing_only() -> list[OnStatus]:
    return ["firing"]


class Route(BaseModel):
    """One rule: events of ``source`` with a status in ``on`` that fit ``match`` start ``runbook`` with ``conf``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str | None = None
    source: list[Source] = Field(default_factory=lambda: list(SOURCES), min_length=1)
    on: list[OnStatus] = Field(default_factory=_firing_only, min_length=1)
    match: Match = Field(default_factory=Match)
    runbook: str = Field(pattern=RUNBOOK_PATTERN)
    conf: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: object) -> object:
        # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true: take it back as "on".
        if isinstance(data, dict) and True in data:
            data = dict(data)
            if "on" in data:
                raise ValueError("'on' is given twice")
            data["on"] = data.pop(True)
        return data

    @field_validator("source", mode="before")
    @classmethod
    def _sources(cls, value: object) -> object:
        return _one_or_many(value)

    @field_validator("on", mode="before")
    @classmethod
    def _statuses(cls, value: object) -> object:
        value = _one_or_many(value)
        if isinstance(value, list) and "resolved" in value:
            raise ValueError("a resolved event never starts a runbook (a resolved alert must not start a failover "
                             "or a fix); remove 'resolved'")
        return value

    @field_validator("conf")
    @classmethod
    def _templates(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in _RESERVED_CONF:
                raise ValueError(f"{key!r} is set by the receiver (the incident's idempotency key)")
            if key.startswith("$"):
                raise ValueError(f"conf key {key!r}: a parameter name cannot start with '$'")
        for key, item in value.items():
            _check_template(item, key)
        return value


class RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> RoutesFile:
        seen: set[str] = set()
        for route in self.routes:
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} is used twice")
            seen.add(route.name)
        return self


def _describe(error: Mapping[str, Any], raw: object) -> str:
    loc = list(error.get("loc", ()))
    where = ".".join(str(p) for p in loc) or "(file)"
    if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
        name = None
        if isinstance(raw, dict) and isinstance(raw.get("routes"), list) and loc[1] < len(raw["routes"]):
            entry = raw["routes"][loc[1]]
            name = entry.get("name") if isinstance(entry, dict) else None
        field = ".".join(str(p) for p in loc[2:]) or "(the route)"
        where = f"route {name!r} (routes[{loc[1]}]), field {field}" if name else f"routes[{loc[1]}], field {field}"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"


# ---- loading ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoutingTable:
    """The validated routes of one file."""

    path: Path
    routes: tuple[Route, ...]

    def route_named(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)


def load_routes(path: Path | None = None, runbooks: set[str] | None = None) -> RoutingTable:
    """Load and validate a routing file; ``RoutingError`` lists every problem, each naming route and field."""
    path = path or routes_file()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RoutingError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise RoutingError(f"{path}: not valid YAML ({exc})") from None
    try:
        parsed = RoutesFile.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(e, raw) for e in exc.errors()]
        raise RoutingError(f"{path}: " + "; ".join(problems)) from None
    known = known_runbooks(dags_folder()) if runbooks is None else runbooks
    missing = [
        f"route {r.name!r}, field runbook: {r.runbook!r} does not exist in dags/ (known: {', '.join(sorted(known))})"
        for r in parsed.routes if r.runbook not in known
    ]
    if missing:
        raise RoutingError(f"{path}: " + "; ".join(missing))
    return RoutingTable(path=path, routes=tuple(parsed.routes))


class RouteStore:
    """The routing table of one file, reloaded when the file changes; a bad file is kept as its error."""

    def __init__(self, path: Path | None = None, runbooks: set[str] | None = None) -> None:
        self.path = path or routes_file()
        self._runbooks = runbooks
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._table: RoutingTable | None = None
        self._error: str | None = None

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def get(self) -> RoutingTable:
        """The current table; ``RoutingError`` while the file is invalid."""
        stamp = self._current_stamp()
        with self._lock:
            if stamp != self._stamp or (self._table is None and self._error is None):
                self._stamp = stamp
                try:
                    self._table, self._error = load_routes(self.path, self._runbooks), None
                except RoutingError as exc:
                    self._table, self._error = None, str(exc)
            if self._table is None:
                raise RoutingError(self._error or f"{self.path}: not loaded")
            return self._table


# ---- matching and conf -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """Which route an event takes (None: ignored, with the reason)."""

    route: Route | None
    reason: str


def choose(table: RoutingTable, event: Event) -> Decision:
    """The first route that fits ``event``, or why none does."""
    if event.status == "resolved":
        return Decision(None, "resolved: a resolved event never starts a runbook")
    if event.status == "other" or event.key is None:
        return Decision(None, f"not an incident event ({event.event_type or event.status})")
    reasons = []
    for route in table.routes:
        if event.source not in route.source:
            continue
        if event.status not in route.on:
            reasons.append(f"{route.name}: starts on {' / '.join(route.on)}, the event is {event.status}")
            continue
        why = route.match.mismatch(event)
        if why is None:
            return Decision(route, f"route {route.name}")
        reasons.append(f"{route.name}: {why}")
    if not reasons:
        return Decision(None, f"no route for source {event.source}")
    shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    return Decision(None, f"no route matches ({shown})")


def _render(value: Any, event: Event) -> Any:
    if isinstance(value, list):
        return [_render(item, event) for item in value]
    if not isinstance(value, dict):
        return value
    kind = next((k for k in value if str(k).startswith("$")), None)
    if kind is None:
        return {key: _render(item, event) for key, item in value.items()}
    arg = str(value[kind])
    if kind == "$format":
        def placeholder(match: re.Match[str]) -> str:
            name, sub = match.group(1), match.group(2)
            found = event.labels.get(sub or "") if name == "labels" else event.field_value(name)
            return found or ""

        text = _PLACEHOLDER.sub(placeholder, arg)
        limit = value.get("max_length")
        # Event text can be long (an annotation, a title): cut it rather than have the runbook refuse the run.
        return text if limit is None or len(text) <= limit else text[: max(0, limit - 3)] + "..."
    result: Any
    if kind == "$label":
        result = event.labels.get(arg)
    elif kind == "$field":
        result = event.field_value(arg)
    else:  # $labels: one value per alert the event carries
        values = [alert.get(arg) for alert in event.alerts]
        result = sorted({v for v in values if v}) if all(values) else None
        if result is None and "default" not in value:
            raise TemplateError(f"label {arg!r} is missing on {values.count(None)} of {len(values)} alerts")
    if result is None:
        if "default" in value:
            return value["default"]
        raise TemplateError(f"the event has no {'label' if kind == '$label' else 'field'} {arg!r}")
    return result


def render_conf(route: Route, event: Event) -> dict[str, Any]:
    """The route's conf for ``event`` (templates filled in); ``TemplateError`` names what is missing."""
    try:
        return {key: _render(item, event) for key, item in route.conf.items()}
    except TemplateError as exc:
        raise TemplateError(f"route {route.name}: conf needs {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m include.intake.routing [FILE]``: validate a routing file, print its routes."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else routes_file()
    try:
        table = load_routes(path)
    except RoutingError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {len(table.routes)} route(s)")
    for route in table.routes:
        print(f"  {route.name}: {'/'.join(route.source)} on {'/'.join(route.on)} -> {route.runbook}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
