"""findings.ocsf.json: a JSON array of OCSF 1.3.0 Compliance Finding events (class_uid 2003).

One event per evaluated (rule, resource), passing ones included (``compliance.status`` Pass), as the
OCSF exports of Prowler and AWS Security Hub do. Attribute choices:

- ``activity_id``: 1 Create for a new finding, 2 Update for a still-open one, 3 Close for a resolved
  one; ``type_uid`` = ``class_uid * 100 + activity_id``.
- ``status_id`` (finding workflow): 1 New for failing, 3 Suppressed for waived, 4 Resolved for
  resolved, 99 Other ("Compliant") for a resource that passes and never failed.
- ``compliance``: ``standards`` = framework names, ``requirements`` = ``<framework> <control>``,
  ``control`` = the first control, ``status_id`` 1 Pass / 3 Fail (a waived check still failed).
- ``severity_id``: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
- Times are epoch milliseconds (``timestamp_t``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from include.compliance.model import Finding
from include.compliance.reports.common import (
    TOOL_NAME,
    TOOL_VENDOR,
    TOOL_VERSION,
    epoch_ms,
    frameworks_list,
)
from include.redaction import redact

OCSF_VERSION = "1.3.0"
CLASS_UID = 2003
CATEGORY_UID = 2

SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
ACTIVITY = {"new": (1, "Create"), "open": (2, "Update"), "resolved": (3, "Close")}
PROVIDER = {"aws": "AWS", "gcp": "GCP", "azure": "Azure"}
ACCOUNT_TYPE = {"aws": "AWS Account", "gcp": "GCP Project", "azure": "Azure Subscription"}
DEFAULT_STANDARD = "Runbooks baseline"


def _status(finding: Finding) -> tuple[int, str]:
    if finding.status == "waived":
        return 3, "Suppressed"
    if finding.lifecycle == "resolved":
        return 4, "Resolved"
    if finding.status == "fail":
        return 1, "New"
    return 99, "Compliant"


def _time(value: str | None, default: int) -> int:
    try:
        ms = epoch_ms(value)
    except ValueError:
        ms = None
    return ms if ms is not None else default


def build_event(finding: Finding, *, scan_id: str, scan_time_ms: int) -> dict[str, Any]:
    """One OCSF Compliance Finding event for ``finding`` (see the module docstring for the mapping)."""
    controls = frameworks_list(finding)
    standards = sorted({framework for framework, _ in controls}) or [DEFAULT_STANDARD]
    requirements = [f"{framework} {control}" for framework, control in controls] or [finding.rule_id]
    activity_id, activity_name = ACTIVITY.get(finding.lifecycle or "new", (1, "Create"))
    if finding.status == "pass" and finding.lifecycle != "resolved":
        activity_id, activity_name = (2, "Update") if finding.first_seen else (1, "Create")
    severity_id = SEVERITY_ID.get(finding.severity, 0)
    status_id, status = _status(finding)
    failed = finding.status in ("fail", "waived")
    first_seen = _time(finding.first_seen, scan_time_ms)
    resource: dict[str, Any] = {
        "uid": finding.resource_id,
        "name": finding.resource_name,
        "type": finding.resource_type,
        "region": finding.region,
        "data": {"evidence": redact(finding.evidence or {})},
    }
    if finding.cloud == "aws":
        resource["cloud_partition"] = finding.resource_id.split(":")[1] if finding.resource_id.startswith("arn:") else "aws"
    event: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Compliance Finding: {activity_name}",
        "severity_id": severity_id,
        "severity": SEVERITY_NAME.get(severity_id, "Unknown"),
        "status_id": status_id,
        "status": status,
        "status_code": finding.status.upper(),
        "status_detail": finding.detail,
        "time": scan_time_ms,
        "message": f"{finding.title}: {finding.detail}" if finding.detail else finding.title,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": f"{scan_id}:{finding.finding_id}",
            "event_code": finding.rule_id,
            "profiles": ["cloud"],
            "product": {"name": TOOL_NAME, "vendor_name": TOOL_VENDOR, "version": TOOL_VERSION, "uid": TOOL_NAME},
        },
        "finding_info": {
            "uid": finding.finding_id,
            "title": finding.title,
            "desc": finding.detail or finding.title,
            "types": ["Compliance"],
            "first_seen_time": first_seen,
            "last_seen_time": scan_time_ms,
            "created_time": first_seen,
            "modified_time": scan_time_ms,
            "product_uid": TOOL_NAME,
        },
        "compliance": {
            "standards": standards,
            "requirements": requirements,
            "control": f"{controls[0][0]} {controls[0][1]}" if controls else finding.rule_id,
            "status_id": 3 if failed else 1,
            "status": "Fail" if failed else "Pass",
            "status_code": finding.status.upper(),
            "status_detail": finding.detail,
        },
        "remediation": {"desc": finding.remediation or "No remediation text."},
        "resources": [resource],
        "cloud": {
            "provider": PROVIDER.get(finding.cloud, finding.cloud),
            "region": finding.region,
            "account": {"uid": finding.account, "type": ACCOUNT_TYPE.get(finding.cloud, "Account")},
        },
        "unmapped": {
            "scan_id": scan_id,
            "rule_id": finding.rule_id,
            "target": finding.target,
            "lifecycle": finding.lifecycle,
            "frameworks": {k: list(v) for k, v in sorted((finding.frameworks or {}).items())},
        },
    }
    if finding.waiver:
        event["unmapped"]["waiver"] = {k: str(v) for k, v in finding.waiver.items()}
    return event


def build_ocsf(findings: list[Finding], *, scan_id: str, scanned_at: str) -> list[dict[str, Any]]:
    """Every finding as an OCSF event."""
    scan_time_ms = epoch_ms(scanned_at) or 0
    return [build_event(f, scan_id=scan_id, scan_time_ms=scan_time_ms) for f in findings]


def render_ocsf(findings: list[Finding], *, scan_id: str, scanned_at: str, **_: Mapping[str, Any]) -> str:
    """findings.ocsf.json: the JSON array of OCSF events."""
    return json.dumps(build_ocsf(findings, scan_id=scan_id, scanned_at=scanned_at), indent=2, default=str) + "\n"
