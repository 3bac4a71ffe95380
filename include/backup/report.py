"""Where a backup run leaves its report, and the per-policy history a chart is drawn from.

    data/backup/<policy>/runs/<run id>.json     one report per run (also dry runs): totals, failures, plan,
                                                manifest validation, retention, RPO
    data/backup/<policy>/listings/<run id>.json the source keys a run's point was made from (what the
                                                validate_points task checks its manifest against)
    data/backup/<policy>/history.jsonl          one line per real run (succeeded or failed): time, point id,
                                                objects, copied, reused, bytes copied, seconds, RPO age,
                                                validation success
    data/backup/<policy>/history.html           the history as a page with charts (rewritten each run)

Reports are redacted (:func:`include.redaction.redact`) before they are written: no credential can reach
them. History lines are appended with one ``write`` on an ``O_APPEND`` file (no interleaving); on an
object-store data root each line is its own object (:func:`include.fileio.append_line`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from html import escape
from typing import Any

from include.charts import line_chart
from include.fileio import append_line, atomic_write_text, read_lines
from include.paths import DataPath, data_root, safe_segment
from include.redaction import redact

REPORT_FORMAT = "runbooks.backup.run/1"


def policy_dir(policy: str, base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / "backup" / safe_segment(policy)


def run_report_path(policy: str, run_id: str, base: DataPath | None = None) -> DataPath:
    return policy_dir(policy, base) / "runs" / f"{safe_segment(run_id)}.json"


def history_path(policy: str, base: DataPath | None = None) -> DataPath:
    return policy_dir(policy, base) / "history.jsonl"


def history_html_path(policy: str, base: DataPath | None = None) -> DataPath:
    return policy_dir(policy, base) / "history.html"


def write_run_report(report: Mapping[str, Any], base: DataPath | None = None) -> DataPath:
    """Write (replace) the report of one run of one policy, redacted; return its path."""
    path = run_report_path(str(report["policy"]), str(report["run_id"]), base)
    atomic_write_text(path, json.dumps(redact(dict(report)), indent=2, sort_keys=True, default=str))
    return path


def read_run_report(policy: str, run_id: str, base: DataPath | None = None) -> dict[str, Any] | None:
    path = run_report_path(policy, run_id, base)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def listing_path(policy: str, run_id: str, base: DataPath | None = None) -> DataPath:
    return policy_dir(policy, base) / "listings" / f"{safe_segment(run_id)}.json"


def write_listing(policy: str, run_id: str, point_id: str, keys: Sequence[str], base: DataPath | None = None) -> DataPath:
    """Record the source listing a run's point was made from (what validating its manifest later compares with)."""
    path = listing_path(policy, run_id, base)
    atomic_write_text(path, json.dumps({"point_id": point_id, "keys": list(keys)}, separators=(",", ":")))
    return path


def read_listing(policy: str, run_id: str, point_id: str, base: DataPath | None = None) -> list[str]:
    """The source listing :func:`write_listing` recorded for ``point_id``; ``ValueError`` when it is another point's."""
    data = json.loads(listing_path(policy, run_id, base).read_text())
    if data.get("point_id") != point_id:
        raise ValueError(f"the listing of run {run_id} is of point {data.get('point_id')}, not {point_id}")
    return [str(key) for key in data["keys"]]


@dataclass(frozen=True)
class HistoryLine:
    """One real backup run of one policy, as a chart needs it."""

    time: str  # ISO-8601 UTC, when the run ended
    policy: str
    run_id: str
    status: str  # succeeded | failed
    point_id: str | None
    objects: int  # listed in the source
    copied: int  # uploaded
    reused: int  # unchanged since the previous point: nothing read or written
    deduplicated: int  # changed or new, but its blob already existed: not uploaded
    failed: int
    bytes_copied: int
    bytes_total: int  # size of the point
    seconds: float
    rpo_age_seconds: float | None  # age of the newest restorable point when the run ended
    rpo_seconds: float
    rpo_breached: bool
    validation_success: bool | None  # great-expectations verdict on the manifest (None: not validated)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryLine:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def append_history(line: HistoryLine, base: DataPath | None = None) -> DataPath:
    """Append one line to the policy's history (one ``write`` on an ``O_APPEND`` file, or one object)."""
    path = history_path(line.policy, base)
    append_line(path, line.to_json())
    return path


def read_history(policy: str, base: DataPath | None = None) -> list[HistoryLine]:
    """The policy's history, oldest first."""
    return [HistoryLine.from_dict(json.loads(line)) for line in read_lines(history_path(policy, base))]


# ---- the history page --------------------------------------------------------------------------------------
def _chart(title: str, lines: Sequence[HistoryLine], name: str, get: Callable[[HistoryLine], float | None], *,
           unit: str, colour: str, limit: float | None = None) -> str:
    """A heading and a line chart (include/charts.py) of one value over the history; a failed run in a red ring."""
    labels = [line.time for line in lines]
    chart = line_chart(title, labels, {name: [float(get(line) or 0) for line in lines]}, unit=unit, width=760,
                       height=200, limits={name: limit} if limit else None, colours={name: colour},
                       failed={name: [line.status != "succeeded" for line in lines]})
    return f"<h2>{escape(title)}</h2>{chart}"


def render_history_html(policy: str, base: DataPath | None = None) -> DataPath:
    """Write ``history.html`` for the policy: RPO age against the objective, bytes copied, duration, and a table."""
    lines = read_history(policy, base)
    path = history_html_path(policy, base)
    charts = ""
    if lines:
        rpo = float(lines[-1].rpo_seconds) / 60
        charts = (
            _chart("Age of the newest restorable point (minutes) against the RPO", lines, "RPO age",
                   lambda h: round((h.rpo_age_seconds or 0) / 60, 1), unit=" min", colour="#1d2330", limit=rpo)
            + _chart("Bytes copied per run", lines, "bytes copied", lambda h: h.bytes_copied, unit=" B", colour="#2a6fb0")
            + _chart("Run duration (seconds)", lines, "seconds", lambda h: h.seconds, unit=" s", colour="#6a4c93")
        )
    rows = "".join(
        f"<tr><td>{escape(h.time)}</td><td>{escape(h.status)}</td><td>{escape(h.point_id or '-')}</td>"
        f"<td>{h.objects}</td><td>{h.copied}</td><td>{h.reused}</td><td>{h.deduplicated}</td><td>{h.failed}</td>"
        f"<td>{h.bytes_copied:,}</td><td>{h.seconds:.1f}</td>"
        f"<td class=\"{'bad' if h.rpo_breached else 'ok'}\">{(h.rpo_age_seconds or 0) / 60:.1f}</td>"
        f"<td>{'-' if h.validation_success is None else ('pass' if h.validation_success else 'FAIL')}</td></tr>"
        for h in reversed(lines)
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Backup history: {escape(policy)}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}"
        "svg text{font-size:11px;fill:#555}.bad{color:#a11}.ok{color:#17622f}.legend{margin:.3rem 0 1rem}</style>"
        f"</head><body><h1>Backup history: {escape(policy)}</h1>"
        f"{charts or '<p>No backup run yet.</p>'}"
        "<h2>Runs</h2><table><thead><tr><th>time</th><th>status</th><th>point</th><th>objects</th><th>copied</th>"
        "<th>reused</th><th>deduplicated</th><th>failed</th><th>bytes copied</th><th>seconds</th>"
        f"<th>RPO age (min)</th><th>validation</th></tr></thead><tbody>{rows}</tbody></table></body></html>"
    )
    atomic_write_text(path, page)
    return path
