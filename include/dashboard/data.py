"""What the dashboard shows, read through each runbook module's own read functions (never its files).

Every function here returns plain, JSON-able dicts and lists, so the page, a test and a future JSON endpoint
see the same figures. Nothing here writes; an absent history is an empty section, not an error.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from include.audit import OUTCOMES, AuditRecord, read_audit

#: Audit outcomes that are mutations (what the section shows unless asked for everything).
MUTATIONS = ("changed", "failed")
#: Rows of the audit table at most (the newest).
AUDIT_LIMIT = 200


def posture(counts: Mapping[str, int]) -> float | None:
    """Share of evaluated checks that pass, in percent (waived counts as not passing); None: nothing checked."""
    checked = sum(int(counts.get(status, 0)) for status in ("pass", "fail", "waived"))
    return round(100.0 * int(counts.get("pass", 0)) / checked, 1) if checked else None


def compliance() -> dict[str, Any]:
    """Latest scan per cloud (posture, fails by severity) and the posture trend over every saved scan."""
    from include.compliance.store import load_history, load_latest_scan

    history = load_history()
    latest = load_latest_scan()
    clouds: list[dict[str, Any]] = []
    if latest is not None:
        by_cloud: dict[str, dict[str, Any]] = {}
        for finding in latest["findings"]:
            row = by_cloud.setdefault(finding.cloud, {"cloud": finding.cloud, "pass": 0, "fail": 0, "waived": 0,
                                                      "fail_by_severity": {}, "new": 0})
            row[finding.status] = row.get(finding.status, 0) + 1
            if finding.status == "fail":
                severities = row["fail_by_severity"]
                severities[finding.severity] = severities.get(finding.severity, 0) + 1
                row["new"] += finding.lifecycle == "new"
        for row in by_cloud.values():
            row["posture"] = posture(row)
        clouds = [by_cloud[name] for name in sorted(by_cloud)]
    trend = [{"scan_id": line["scan_id"], "scanned_at": line["scanned_at"],
              "posture": {cloud: posture(counts) for cloud, counts in (line.get("by_cloud") or {}).items()}}
             for line in history]
    return {
        "scan_id": latest["scan_id"] if latest else None,
        "scanned_at": latest["scanned_at"] if latest else None,
        "totals": latest["totals"] if latest else None,
        "clouds": clouds,
        "trend": trend,
    }


def backups() -> dict[str, Any]:
    """Per object-store backup policy: its RPO objective, the last backup run and the last restore drill."""
    from include.backup import drill, report
    from include.backup.policies import load_policies

    config = load_policies()
    drills: dict[str, dict[str, Any]] = {}
    for line in drill.read_history():  # oldest first: the last one per policy wins
        drills[str(line.get("policy"))] = line
    rows = []
    for policy in config.policies:
        runs = report.read_history(policy.name)
        last = runs[-1] if runs else None
        last_drill = drills.get(policy.name)
        rows.append({
            "policy": policy.name,
            "source": f"{policy.source.target}:{policy.source.container}",
            "destination": f"{policy.destination.target}:{policy.destination.container}",
            "rpo_objective_seconds": policy.rpo.total_seconds(),
            "runs": len(runs),
            "last_backup": None if last is None else {
                "time": last.time, "status": last.status, "point_id": last.point_id, "copied": last.copied,
                "bytes_copied": last.bytes_copied, "rpo_age_seconds": last.rpo_age_seconds,
                "rpo_breached": last.rpo_breached},
            "last_drill": None if last_drill is None else {
                key: last_drill.get(key) for key in ("time", "run_id", "success", "point_id", "rpo_seconds",
                                                     "rpo_met", "restore_seconds", "objects", "mismatches",
                                                     "scratch_removed", "error")},
        })
    return {"policies": rows}


def failovers(allowed: Collection[str] | None = None, *, limit: int = 50) -> dict[str, Any]:
    """Failover, failback and drill runs, newest first, with their RTO (only runbooks in ``allowed``)."""
    from include.failover.history import read_history

    entries = [e for e in read_history() if allowed is None or e.get("runbook") in allowed]
    rows = [{key: entry.get(key) for key in ("written_at", "runbook", "run_id", "service", "status", "dry_run",
                                             "approver", "rto_seconds", "our_steps_seconds", "approval_wait_seconds")}
            for entry in entries]
    rows.sort(key=lambda row: str(row["written_at"]), reverse=True)
    return {"runs": rows[:limit], "total": len(rows)}


@dataclass(frozen=True)
class AuditFilter:
    """The audit table's filter form: a resource (part of its id), a runbook, a UTC date range, outcomes."""

    resource: str = ""
    runbook: str = ""
    since: str = ""  # YYYY-MM-DD, inclusive
    until: str = ""  # YYYY-MM-DD, inclusive
    everything: bool = False  # False: mutations only (changed / failed), True: every outcome

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                date.fromisoformat(value)  # ValueError: the app answers 422 naming the field

    def outcomes(self) -> tuple[str, ...]:
        return OUTCOMES if self.everything else MUTATIONS

    def query(self) -> dict[str, str]:
        """The non-empty fields, as the form's query string has them."""
        found = {k: v for k, v in (("resource", self.resource), ("runbook", self.runbook), ("since", self.since),
                                   ("until", self.until)) if v}
        return {**found, "everything": "on"} if self.everything else found


def audit(selection: AuditFilter, allowed: Collection[str] | None = None, *, limit: int = AUDIT_LIMIT) -> dict[str, Any]:
    """Audit records matching ``selection``, newest first (at most ``limit``), with how many matched."""
    records: Iterable[AuditRecord] = read_audit(runbook=selection.runbook or None, since=selection.since or None,
                                                until=selection.until or None)
    wanted = selection.outcomes()
    needle = selection.resource.strip().lower()
    matched = [r for r in records
               if r.outcome in wanted and (allowed is None or r.runbook in allowed)
               and (not needle or needle in (r.resource or "").lower())]
    matched.reverse()
    rows = [{key: getattr(r, key) for key in ("time", "runbook", "run_id", "actor", "approver", "step", "action",
                                              "resource", "outcome", "dry_run", "error")} for r in matched[:limit]]
    return {"rows": rows, "matched": len(matched), "filter": selection.query()}
