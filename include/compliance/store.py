"""Scan history: every scan's findings, a pointer to the latest, and a trend line per scan.

Layout under the data directory (``RUNBOOKS_DATA_DIR``)::

    compliance/
      scans/<scan_id>/findings.json   # {"scan_id", "scanned_at", "inventory", "totals", "findings": [...]}
      scans/<scan_id>/evaluated.json  # the runbook's findings before the diff (a retry restarts from it)
      scans/<scan_id>/validation/     # great-expectations results (include/compliance/validation.py)
      latest.json                     # {"scan_id", "path", "scanned_at"}
      history.jsonl                   # one line per scan: totals by status / severity / cloud / lifecycle

Scans are never overwritten by another scan; ``latest.json`` is replaced atomically (a rename on local
disk, one put on an object-store data root: docs/data-root.md). Saving the same
``scan_id`` twice (a retried task) replaces that scan and its history line instead of adding a twin.

:func:`diff` gives each finding its lifecycle against the previous scan (``new`` / ``open`` /
``resolved``) without ever calling "resolved" what was merely not looked at: findings of targets whose
inventory was incomplete, or of targets / rules outside this scan, are carried over, not resolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from include.compliance.engine import sort_findings
from include.compliance.model import SEVERITIES, Finding
from include.fileio import atomic_write_text
from include.paths import DataPath, as_data_path, data_root, safe_segment

_FAILING = ("fail", "waived")


def compliance_dir(base: DataPath | None = None) -> DataPath:
    """The compliance folder of the data root (``<data>/compliance``)."""
    return (base or data_root()) / "compliance"


def _iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_scan_id(scanned_at: datetime, run_id: str | None = None) -> str:
    """``<UTC time>`` or ``<UTC time>_<run id>``: sortable, one path segment."""
    stamp = _iso(scanned_at).replace("-", "").replace(":", "")
    return f"{stamp}_{safe_segment(run_id)}" if run_id else stamp


def totals(findings: Iterable[Finding]) -> dict[str, Any]:
    """Counts for trend charts: by status, and by status within each severity / cloud / lifecycle."""
    findings = list(findings)
    by_status: dict[str, int] = {"fail": 0, "pass": 0, "waived": 0}
    by_severity: dict[str, dict[str, int]] = {s: {"fail": 0, "pass": 0, "waived": 0} for s in SEVERITIES}
    by_cloud: dict[str, dict[str, int]] = {}
    by_lifecycle: dict[str, int] = {"new": 0, "open": 0, "resolved": 0}
    for f in findings:
        by_status[f.status] = by_status.get(f.status, 0) + 1
        by_severity.setdefault(f.severity, {}).setdefault(f.status, 0)
        by_severity[f.severity][f.status] += 1
        cloud = by_cloud.setdefault(f.cloud, {"fail": 0, "pass": 0, "waived": 0})
        cloud[f.status] = cloud.get(f.status, 0) + 1
        if f.lifecycle:
            by_lifecycle[f.lifecycle] = by_lifecycle.get(f.lifecycle, 0) + 1
    return {
        "findings": len(findings),
        "by_status": by_status,
        "by_severity": by_severity,
        "by_cloud": dict(sorted(by_cloud.items())),
        "by_lifecycle": by_lifecycle,
    }


def save_scan(
    findings: list[Finding],
    *,
    scanned_at: datetime,
    scan_id: str | None = None,
    inventory: dict[str, Any] | None = None,
    base: DataPath | None = None,
) -> dict[str, Any]:
    """Write one scan, move ``latest.json`` to it, append its trend line. Returns the latest pointer."""
    root = compliance_dir(base)
    scan_id = scan_id or new_scan_id(scanned_at)
    path = scan_dir(scan_id, base) / "findings.json"
    counts = totals(findings)
    document = {
        "scan_id": scan_id,
        "scanned_at": _iso(scanned_at),
        "inventory": inventory or {},
        "totals": counts,
        "findings": [f.to_dict() for f in sort_findings(findings)],
    }
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True))
    pointer = {"scan_id": scan_id, "path": str(path), "scanned_at": document["scanned_at"]}
    history = [line for line in load_history(base) if line.get("scan_id") != scan_id]
    history.append({**pointer, **counts})
    history.sort(key=lambda line: (line["scanned_at"], line["scan_id"]))
    atomic_write_text(root / "history.jsonl", "".join(json.dumps(line, sort_keys=True) + "\n" for line in history))
    atomic_write_text(root / "latest.json", json.dumps(pointer, indent=2))
    return {**pointer, "totals": counts}


def load_scan(path: DataPath | str) -> dict[str, Any]:
    """A saved scan document with its findings as :class:`Finding` objects."""
    document: dict[str, Any] = json.loads(as_data_path(path).read_text())
    document["findings"] = [Finding.from_dict(f) for f in document.get("findings", [])]
    return document


def latest_pointer(base: DataPath | None = None) -> dict[str, Any] | None:
    """``latest.json`` (None before the first scan)."""
    file = compliance_dir(base) / "latest.json"
    if not file.exists():
        return None
    return dict(json.loads(file.read_text()))


def load_latest_scan(base: DataPath | None = None) -> dict[str, Any] | None:
    pointer = latest_pointer(base)
    return load_scan(pointer["path"]) if pointer else None


def load_latest_findings(base: DataPath | None = None, *, before: str | None = None) -> list[Finding]:
    """The findings of the latest scan ([] before the first scan).

    ``before``: the latest scan other than this scan id, so that a retried diff step compares with the
    scan before it instead of with its own earlier save.
    """
    pointer = latest_pointer(base)
    if pointer and before and pointer["scan_id"] == before:
        earlier = [line for line in load_history(base) if line["scan_id"] != before]
        pointer = earlier[-1] if earlier else None
    if not pointer or not as_data_path(pointer["path"]).exists():
        return []
    return list(load_scan(pointer["path"])["findings"])


def load_history(base: DataPath | None = None) -> list[dict[str, Any]]:
    """One dict per saved scan, oldest first."""
    file = compliance_dir(base) / "history.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def _still_failing(finding: Finding) -> bool:
    return finding.status in _FAILING and finding.lifecycle != "resolved"


def diff(
    previous: Iterable[Finding],
    current: Iterable[Finding],
    *,
    scanned_at: datetime,
    incomplete_targets: Iterable[str] = (),
    scanned_targets: Iterable[str] | None = None,
    scanned_rules: Iterable[str] | None = None,
) -> list[Finding]:
    """Set each current finding's lifecycle against the previous scan; add the resolved ones.

    - ``new``: failing (or waived) now, not failing before; ``first_seen`` = this scan.
    - ``open``: failing before and now; ``first_seen`` kept from the first scan that saw it.
    - ``resolved``: failing before, passing now, or gone from the inventory, but "gone" counts only
      when the resource's target was inventoried completely. A target listed in ``incomplete_targets``
      keeps its previously failing findings open, with a note.
    - Previous findings outside this scan's scope (``scanned_targets`` / ``scanned_rules``; None = all)
      are carried over as they were, so the latest scan remains a picture of the whole estate.
    """
    stamp = _iso(scanned_at)
    incomplete = set(incomplete_targets)
    targets_in_scope = set(scanned_targets) if scanned_targets is not None else None
    rules_in_scope = set(scanned_rules) if scanned_rules is not None else None
    before = {f.finding_id: f for f in previous}
    result: list[Finding] = []
    seen: set[str] = set()

    for finding in current:
        seen.add(finding.finding_id)
        old = before.get(finding.finding_id)
        was_failing = old is not None and _still_failing(old)
        if finding.status in _FAILING:
            if was_failing and old is not None:
                result.append(replace(finding, lifecycle="open", first_seen=old.first_seen or stamp))
            else:
                result.append(replace(finding, lifecycle="new", first_seen=stamp))
        elif was_failing and old is not None:
            result.append(replace(finding, lifecycle="resolved", first_seen=old.first_seen))
        else:
            result.append(replace(finding, lifecycle=None, first_seen=None))

    for fid, old in before.items():
        if fid in seen or old.lifecycle == "resolved":
            continue
        in_scope = (targets_in_scope is None or old.target in targets_in_scope) and (
            rules_in_scope is None or old.rule_id in rules_in_scope
        )
        if not in_scope:
            lifecycle = "open" if _still_failing(old) else old.lifecycle
            result.append(replace(old, lifecycle=lifecycle, evidence={**old.evidence, "carried_over": True}))
            continue
        if not _still_failing(old):
            continue  # a pass that disappeared: nothing to report
        if old.target in incomplete:
            detail = old.evidence.get("last_detail", old.detail)
            result.append(
                replace(
                    old,
                    lifecycle="open",
                    detail=(
                        f"{detail} [not re-checked: the inventory of target {old.target} was incomplete, "
                        "so this finding stays open]"
                    ),
                    evidence={**old.evidence, "last_detail": detail, "stale": True},
                )
            )
        else:
            result.append(
                replace(
                    old,
                    status="pass",
                    lifecycle="resolved",
                    detail="resource no longer in the inventory (deleted or out of scope)",
                    waiver=None,
                    evidence={"gone": True, "last_detail": old.evidence.get("last_detail", old.detail)},
                )
            )
    return sort_findings(result)


def scan_dir(scan_id: str, base: DataPath | None = None) -> DataPath:
    """The folder of one scan (findings.json, the evaluated findings before the diff, validation, reports)."""
    if "/" in scan_id or scan_id in ("", ".", ".."):
        raise ValueError(f"scan id {scan_id!r} is not one path segment")
    return compliance_dir(base) / "scans" / scan_id


def write_findings(path: DataPath, findings: Iterable[Finding]) -> int:
    """Write findings as a JSON list (atomically); return how many."""
    items = [f.to_dict() for f in findings]
    atomic_write_text(path, json.dumps(items, sort_keys=True))
    return len(items)


def read_findings(path: DataPath | str) -> list[Finding]:
    return [Finding.from_dict(item) for item in json.loads(as_data_path(path).read_text())]


def inventory_gaps(summary: dict[str, Any], requested: Iterable[str]) -> list[str]:
    """Requested targets the inventory does not cover completely (absent, or collected with errors).

    Their previously failing findings must stay open: nothing about them was observed this time.
    """
    covered = {t["target"]: bool(t.get("complete")) for t in summary.get("targets", [])}
    return sorted(name for name in set(requested) if not covered.get(name, False))
