"""Which dashboard section shows each runbook: one entry per DAG file in ``dags/``.

A runbook added to ``dags/`` without an entry here fails tests/test_dashboard.py: whoever adds a runbook
decides where its results appear. A section also decides who sees it: a signed-in user sees a section when
Airflow lets them read at least one of its runbooks, and only the rows of the runbooks they may read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Section = Literal["compliance", "backup", "failover", "approvals", "audit"]

#: Section id -> heading, in page order.
SECTIONS: dict[Section, str] = {
    "compliance": "Compliance posture",
    "backup": "Backups and restore drills",
    "failover": "Failover history",
    "approvals": "Pending approvals",
    "audit": "Recent mutations",
}


@dataclass(frozen=True)
class Entry:
    """Where one runbook shows: its main section, and what of it appears there."""

    section: Section
    shows: str
    #: Does the runbook ask for approval (a human-in-the-loop task)? Then it also appears under approvals.
    approvals: bool = False


RUNBOOKS: dict[str, Entry] = {
    "inventory_estate": Entry("compliance", "the inventory every scan evaluates (resources per cloud)"),
    "compliance_scan": Entry("compliance", "posture per cloud, its trend, failing findings by severity"),
    "remediate_findings": Entry("audit", "each fix applied, per resource", approvals=True),
    "backup_object_stores": Entry("backup", "last backup per policy and the RPO age it left"),
    "backup_snapshots": Entry("audit", "snapshots taken, copied and expired, per resource"),
    "restore_drill": Entry("backup", "last drill per policy: measured RPO, restore time, checksums"),
    "restore_objects": Entry("audit", "objects restored, per destination", approvals=True),
    "failover_service": Entry("failover", "each failover with its RTO", approvals=True),
    "failback_service": Entry("failover", "each failback with its duration", approvals=True),
    "failover_drill": Entry("failover", "each drill's measured RTO", approvals=True),
    "provision_environment": Entry("audit", "resources created or changed", approvals=True),
    "teardown_environment": Entry("audit", "resources removed", approvals=True),
    "detect_drift": Entry("audit", "the provisioning dry runs it starts for drifted environments"),
    "cost_hygiene": Entry("audit", "idle resources cleaned up", approvals=True),
}


def runbooks_of(section: Section) -> list[str]:
    """The runbooks whose data a section shows (approvals: every runbook that can ask for one)."""
    if section == "approvals":
        return sorted(name for name, entry in RUNBOOKS.items() if entry.approvals)
    if section == "audit":
        return sorted(RUNBOOKS)  # every runbook writes the audit trail
    return sorted(name for name, entry in RUNBOOKS.items() if entry.section == section)
