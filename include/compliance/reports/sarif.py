"""findings.sarif: SARIF 2.1.0 (OASIS), one run, one reportingDescriptor per rule.

Mapping
- ``tool.driver.rules``: id, name, short/full description, ``help`` = remediation text (the markdown
  also lists the mapped controls with their titles), ``helpUri`` when the rule metadata has one,
  ``defaultConfiguration.level`` from the severity, ``properties.tags`` with ``<framework>:<control>``
  for every mapped control, ``properties.controls`` with each control's catalogue title,
  ``security-severity`` (GitHub code scanning).
- ``results``: every failing and waived finding, plus resolved ones (``kind: pass``,
  ``baselineState: absent``). Passing findings that never failed are counted in ``run.properties``
  only, which keeps the log small on a large estate.
- Cloud resources are not files: a result's location is a ``logicalLocation`` with
  ``kind: "resource"`` and ``fullyQualifiedName`` = the resource id (ARN, GCS name, blob URL).
- ``partialFingerprints["findingId/v1"]`` = the stable finding id (rule + target + resource).
- Waived findings carry a ``suppressions`` entry (external, accepted) with the waiver reason as
  justification, owner and expiry as properties.
- ``baselineState``: new -> ``new``, open -> ``unchanged``, resolved -> ``absent``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from include.compliance.model import Finding
from include.compliance.reports.common import (
    TOOL_NAME,
    TOOL_VERSION,
    controls_list,
    iso_utc,
    severity_rank,
)
from include.redaction import redact

SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_VERSION = "2.1.0"

LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
#: GitHub's ``security-severity`` (a CVSS-like score as a string): >= 9 critical, >= 7 high, >= 4 medium.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
BASELINE = {"new": "new", "open": "unchanged", "resolved": "absent"}
FINGERPRINT_KEY = "findingId/v1"


def _rule_name(rule_id: str) -> str:
    """``aws_s3_bucket_encryption`` / ``aws.s3.encryption`` -> ``AwsS3BucketEncryption``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", rule_id) if part)


def _first_uri(meta: Mapping[str, Any]) -> str | None:
    for key in ("help_uri", "helpUri", "url"):
        if isinstance(meta.get(key), str) and meta[key].startswith(("http://", "https://")):
            return str(meta[key])
    references = meta.get("references")
    if isinstance(references, (list, tuple)):
        for ref in references:
            if isinstance(ref, str) and ref.startswith(("http://", "https://")):
                return ref
    return None


def _rule(finding: Finding, meta: Mapping[str, Any]) -> dict[str, Any]:
    controls = controls_list(finding)
    tags = ["security", "compliance", finding.cloud, finding.resource_type]
    tags += [f"{framework}:{control}" for framework, control, _ in controls]
    controls_md = "".join(
        f"\n- {framework} {control}" + (f": {title}" if title else "") for framework, control, title in controls
    )
    rationale = str(meta.get("rationale") or meta.get("description") or finding.title)
    remediation = str(meta.get("remediation") or finding.remediation or "")
    rule: dict[str, Any] = {
        "id": finding.rule_id,
        "name": _rule_name(finding.rule_id),
        "shortDescription": {"text": str(meta.get("title") or finding.title)},
        "fullDescription": {"text": rationale},
        "help": {
            "text": remediation or "No remediation text.",
            "markdown": (f"**Remediation:** {remediation}" if remediation else "No remediation text.")
            + (f"\n\n**Controls:**{controls_md}" if controls_md else ""),
        },
        "defaultConfiguration": {"level": LEVEL.get(finding.severity, "warning")},
        "properties": {
            "tags": list(dict.fromkeys(tags)),
            "severity": finding.severity,
            "security-severity": SECURITY_SEVERITY.get(finding.severity, "5.5"),
            "precision": "very-high",
            "problem.severity": {"error": "error", "warning": "warning"}.get(LEVEL.get(finding.severity, ""), "recommendation"),
            "frameworks": {k: list(v) for k, v in sorted((finding.frameworks or {}).items())},
            "controls": [
                {"framework": framework, "id": control, **({"title": title} if title else {})}
                for framework, control, title in controls
            ],
            "cloud": finding.cloud,
            "resource_type": finding.resource_type,
        },
    }
    uri = _first_uri(meta)
    if uri:
        rule["helpUri"] = uri
    if finding.fixer:
        rule["properties"]["fixer"] = finding.fixer
    return rule


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    resolved = finding.status == "pass"
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "kind": "pass" if resolved else "fail",
        "level": "none" if resolved else LEVEL.get(finding.severity, "warning"),
        "message": {
            "text": (
                f"{finding.title}: {finding.detail} ({finding.resource_type} {finding.resource_name})"
                if finding.detail
                else f"{finding.title} ({finding.resource_type} {finding.resource_name})"
            )
        },
        "locations": [
            {
                "logicalLocations": [
                    {
                        "name": finding.resource_name or finding.resource_id,
                        "fullyQualifiedName": finding.resource_id,
                        "kind": "resource",
                        "properties": {
                            "cloud": finding.cloud,
                            "target": finding.target,
                            "account": finding.account,
                            "region": finding.region,
                            "resource_type": finding.resource_type,
                        },
                    }
                ]
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: finding.finding_id},
        "properties": {
            "finding_id": finding.finding_id,
            "severity": finding.severity,
            "status": finding.status,
            "lifecycle": finding.lifecycle,
            "cloud": finding.cloud,
            "target": finding.target,
            "account": finding.account,
            "region": finding.region,
            "resource_type": finding.resource_type,
            "remediation": finding.remediation,
            "evidence": redact(finding.evidence or {}),
        },
    }
    if finding.lifecycle in BASELINE:
        result["baselineState"] = BASELINE[finding.lifecycle]
    first_seen = _date_time(finding.first_seen)
    if first_seen:
        result["provenance"] = {"firstDetectionTimeUtc": first_seen}
    if finding.status == "waived":
        waiver = finding.waiver or {}
        result["suppressions"] = [
            {
                "kind": "external",
                "status": "accepted",
                "justification": str(waiver.get("reason") or "waived"),
                "properties": {k: str(v) for k, v in waiver.items() if k in ("owner", "expires", "rule", "resource")},
            }
        ]
    return result


def _date_time(value: str | None) -> str | None:
    try:
        return iso_utc(value)
    except ValueError:
        return None


def build_sarif(
    findings: list[Finding],
    *,
    scan_id: str,
    scanned_at: str,
    totals: Mapping[str, Any],
    rules: Mapping[str, Mapping[str, Any]] | None = None,
    validation_success: bool | None = None,
) -> dict[str, Any]:
    """The SARIF log as a dict (see the module docstring for the mapping)."""
    rules = rules or {}
    reported = [f for f in findings if f.status in ("fail", "waived") or f.lifecycle == "resolved"]
    reported.sort(key=lambda f: (severity_rank(f.severity), f.rule_id, f.resource_id))
    descriptors: dict[str, dict[str, Any]] = {}
    # Every rule that produced a finding is described, passing ones too: the log says what was checked.
    for finding in sorted(findings, key=lambda f: f.rule_id):
        if finding.rule_id not in descriptors:
            descriptors[finding.rule_id] = _rule(finding, rules.get(finding.rule_id, {}))
    index = {rule_id: i for i, rule_id in enumerate(descriptors)}
    run_properties: dict[str, Any] = {"scan_id": scan_id, "totals": totals}
    if validation_success is not None:
        run_properties["fact_validation_success"] = validation_success
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": TOOL_VERSION,
                        "semanticVersion": TOOL_VERSION,
                        "rules": list(descriptors.values()),
                    }
                },
                "automationDetails": {"id": f"compliance_scan/{scan_id}"},
                "invocations": [
                    {"executionSuccessful": True, "startTimeUtc": scanned_at, "properties": {"scan_id": scan_id}}
                ],
                "columnKind": "unicodeCodePoints",
                "results": [_result(f, index[f.rule_id]) for f in reported],
                "properties": run_properties,
            }
        ],
    }


def render_sarif(findings: list[Finding], **kwargs: Any) -> str:
    """findings.sarif: :func:`build_sarif` as indented JSON."""
    return json.dumps(build_sarif(findings, **kwargs), indent=2, default=str) + "\n"
