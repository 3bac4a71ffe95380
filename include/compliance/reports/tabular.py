"""findings.json (scan metadata, totals, every finding) and findings.csv (one row per finding)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from include.compliance.model import Finding
from include.compliance.reports.common import (
    TOOL_NAME,
    TOOL_VERSION,
    frameworks_list,
)
from include.redaction import redact

JSON_SCHEMA_ID = "runbooks.compliance.findings/v1"

CSV_COLUMNS = (
    "finding_id", "rule_id", "title", "severity", "status", "lifecycle", "cloud", "target", "account",
    "region", "resource_type", "resource_id", "resource_name", "detail", "remediation", "frameworks",
    "waiver_reason", "waiver_owner", "waiver_expires", "first_seen", "fixer",
)
#: A cell starting with one of these is read as a formula by spreadsheet programs (CSV injection):
#: resource names and tags come from the clouds, so they are not trusted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def finding_record(finding: Finding) -> dict[str, Any]:
    """A finding as findings.json writes it: its fields, evidence redacted."""
    data = finding.to_dict()
    data["evidence"] = redact(data.get("evidence") or {})
    return data


def render_json(
    findings: list[Finding],
    *,
    scan: Mapping[str, Any],
    totals: Mapping[str, Any],
    validation: Mapping[str, Any] | None,
) -> str:
    """findings.json: scan metadata, totals, the validation summary and every finding."""
    document = {
        "schema": JSON_SCHEMA_ID,
        "scan": {**scan, "tool": {"name": TOOL_NAME, "version": TOOL_VERSION}},
        "totals": totals,
        "validation": validation,
        "findings": [finding_record(f) for f in findings],
    }
    return json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(findings: list[Finding]) -> str:
    """findings.csv: one row per finding, cells that a spreadsheet would read as formulas neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in findings:
        waiver = f.waiver or {}
        row = {
            **{k: getattr(f, k) for k in CSV_COLUMNS if hasattr(f, k)},
            "frameworks": "; ".join(f"{fw}: {control}" for fw, control in frameworks_list(f)),
            "waiver_reason": waiver.get("reason"),
            "waiver_owner": waiver.get("owner"),
            "waiver_expires": waiver.get("expires"),
        }
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()
