"""Where failover, failback and drill runs leave their results: one result file per run and one history.

- ``<data dir>/failover/<run id>/result.json``: everything the run saw and did (assessment, decision, plan,
  each step with its time, verification, RTO), written atomically.
- ``<data dir>/failover/history.jsonl``: one JSON line per run (failover, failback, drill), appended with one
  ``write`` on an ``O_APPEND`` file (one object per line on an object-store data root:
  :func:`include.fileio.append_line`); the fields a report charts: service, incident, status, started / verified times, RTO and its split
  (our steps, approval wait, Airflow's scheduling), per-step seconds. :func:`read_history` loads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from include.fileio import append_line, atomic_write_text, read_lines
from include.paths import DataPath, data_root, safe_segment
from include.redaction import redact

RESULTS_DIR = "failover"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from ISO-8601 text (``Z`` or an offset) or a datetime; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def seconds_between(start: str | datetime | None, end: str | datetime | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return round((b - a).total_seconds(), 3) if a and b else None


def result_path(run_id: str, base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / RESULTS_DIR / safe_segment(run_id) / "result.json"


def history_path(base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / RESULTS_DIR / "history.jsonl"


def write_result(result: Mapping[str, Any], base: DataPath | None = None) -> DataPath:
    path = result_path(str(result["run_id"]), base)
    atomic_write_text(path, json.dumps(redact(dict(result)), indent=2, sort_keys=True, default=str))
    return path


def append_history(entry: Mapping[str, Any], base: DataPath | None = None) -> DataPath:
    """Append one run's line (runs of several services append at once: one record each, never interleaved)."""
    path = history_path(base)
    append_line(path, json.dumps(redact(dict(entry)), sort_keys=True, default=str))
    return path


def read_history(base: DataPath | None = None, *, service: str | None = None) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in read_lines(history_path(base))]
    return [e for e in entries if service is None or e.get("service") == service]
