"""Shared pieces of the report writers: totals, history points, severity order, framework controls.

Redaction is :mod:`include.redaction` and atomic file writes are :mod:`include.fileio` (one of each for
the whole project).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from include.compliance.frameworks import control_title
from include.compliance.model import SEVERITIES, Finding

TOOL_NAME = "runbooks-compliance"
TOOL_VENDOR = "Multi-cloud runbooks"
TOOL_VERSION = "0.1.0"

STATUSES = ("fail", "pass", "waived")
LIFECYCLES = ("new", "open", "resolved")



def as_finding(value: Finding | Mapping[str, Any]) -> Finding:
    """Accept a Finding or its ``to_dict()`` form (XCom round trip)."""
    return value if isinstance(value, Finding) else Finding.from_dict(dict(value))


def as_findings(values: Iterable[Finding | Mapping[str, Any]]) -> list[Finding]:
    """Accept Findings or their dicts (XCom round trip), as a list of Findings."""
    return [as_finding(v) for v in values]


def iso_utc(value: datetime | str | None) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)  # 3.11 reads a trailing Z
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(value: datetime | str | None) -> int | None:
    """Epoch milliseconds of an ISO-8601 UTC time (None stays None)."""
    text = iso_utc(value)
    if text is None:
        return None
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def frameworks_list(finding: Finding) -> list[tuple[str, str]]:
    """``[(framework, control), ...]`` sorted, from ``finding.frameworks``."""
    pairs = [
        (str(framework), str(control))
        for framework, controls in (finding.frameworks or {}).items()
        for control in (controls or [])
    ]
    return sorted(set(pairs))


def controls_list(finding: Finding) -> list[tuple[str, str, str | None]]:
    """``[(framework, control, title), ...]``: :func:`frameworks_list` with each control's title from its
    framework catalogue (``config/compliance/frameworks/``); None for a framework or id not catalogued."""
    return [(framework, control, control_title(framework, control)) for framework, control in frameworks_list(finding)]


def compute_totals(findings: Iterable[Finding | Mapping[str, Any]]) -> dict[str, Any]:
    """Per-scan totals: the ``totals`` object of findings.json and of each history line.

    - ``by_status``: every evaluated (rule, resource) pair by verdict.
    - ``by_severity``: failing findings per severity (waived and passing ones are not counted).
    - ``by_cloud`` / ``by_framework``: fail / pass / waived per cloud and per framework (a finding
      counts once per framework it maps to).
    - ``lifecycle``: ``new`` and ``open`` count failing findings; ``resolved`` counts findings whose
      resource passes now but failed in the previous scan.
    """
    items = as_findings(findings)
    by_status = dict.fromkeys(STATUSES, 0)
    by_severity = dict.fromkeys(SEVERITIES, 0)
    by_cloud: dict[str, dict[str, int]] = {}
    by_framework: dict[str, dict[str, int]] = {}
    lifecycle = dict.fromkeys(LIFECYCLES, 0)
    rules: set[str] = set()
    resources: set[str] = set()
    for f in items:
        status = f.status if f.status in by_status else "fail"
        by_status[status] += 1
        rules.add(f.rule_id)
        resources.add(f"{f.target}|{f.resource_id}")
        by_cloud.setdefault(f.cloud, dict.fromkeys(STATUSES, 0))[status] += 1
        for framework in sorted({fw for fw, _ in frameworks_list(f)}):
            by_framework.setdefault(framework, dict.fromkeys(STATUSES, 0))[status] += 1
        if status == "fail":
            by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
            if f.lifecycle in ("new", "open"):
                lifecycle[f.lifecycle] += 1
        if f.lifecycle == "resolved":
            lifecycle["resolved"] += 1
    evaluated = by_status["fail"] + by_status["pass"]
    return {
        "findings": len(items),
        "rules": len(rules),
        "resources": len(resources),
        "by_status": by_status,
        "by_severity": by_severity,
        "by_cloud": dict(sorted(by_cloud.items())),
        "by_framework": dict(sorted(by_framework.items())),
        "lifecycle": lifecycle,
        "pass_rate": round(100.0 * by_status["pass"] / evaluated, 1) if evaluated else None,
    }


def history_entry(
    findings: Iterable[Finding | Mapping[str, Any]], *, scan_id: str, scanned_at: datetime | str
) -> dict[str, Any]:
    """One line of ``history.jsonl``: ``{"scan_id", "scanned_at", "totals"}`` (totals as above)."""
    return {"scan_id": scan_id, "scanned_at": iso_utc(scanned_at), "totals": compute_totals(findings)}


def history_point(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Read one history line for the trend chart.

    Accepts :func:`history_entry`'s shape (``{"scan_id", "scanned_at", "totals": {...}}``), the
    compliance store's (totals at the top level, ``by_severity`` as ``{severity: {status: n}}``,
    ``by_lifecycle``) and a flat one (``fail``, ``critical`` ... at the top level).
    """
    nested = entry.get("totals")
    totals: Mapping[str, Any] = nested if isinstance(nested, Mapping) else entry

    def section(*keys: str) -> Mapping[str, Any]:
        for key in keys:
            value = totals.get(key)
            if isinstance(value, Mapping):
                return value
        return totals

    by_status = section("by_status")
    by_severity = section("by_severity")
    lifecycle = section("lifecycle", "by_lifecycle")

    def number(mapping: Mapping[str, Any], key: str) -> int:
        value = mapping.get(key, 0)
        if isinstance(value, Mapping):  # the store's shape: by_severity = {severity: {status: n}}
            value = value.get("fail", 0)
        return int(value) if isinstance(value, (int, float)) else 0

    return {
        "scan_id": str(entry.get("scan_id", "")),
        "scanned_at": str(entry.get("scanned_at", "")),
        "fail": number(by_status, "fail"),
        "pass": number(by_status, "pass"),
        "waived": number(by_status, "waived"),
        "critical_high": number(by_severity, "critical") + number(by_severity, "high"),
        "new": number(lifecycle, "new"),
        "resolved": number(lifecycle, "resolved"),
    }


def severity_rank(severity: str) -> int:
    """Sort key: critical first, unknown severities last."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
