"""Compliance reports: JSON, CSV, SARIF 2.1.0, OCSF Compliance Finding and a manager's HTML page.

    paths = write_all(findings, scan_id=..., scanned_at=..., out_dir=run_dir, history=history_lines,
                      validation=validation_summary)

writes ``findings.json``, ``findings.csv``, ``findings.sarif``, ``findings.ocsf.json`` and ``report.html``
into ``out_dir`` and the same set into ``latest_dir`` (default: ``<out_dir>/../latest``).

History: ``history`` is the list of ``history.jsonl`` lines of previous scans, each as written by
:func:`history_entry` (``{"scan_id", "scanned_at", "totals": compute_totals(findings)}``). The current
scan is appended for the trend chart unless its ``scan_id`` is already the list's last entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from include.compliance.model import Finding
from include.compliance.reports.common import (
    as_findings,
    compute_totals,
    history_entry,
    history_point,
    iso_utc,
)
from include.compliance.reports.html import render_html
from include.compliance.reports.ocsf import render_ocsf
from include.compliance.reports.sarif import render_sarif
from include.compliance.reports.tabular import render_csv, render_json
from include.fileio import atomic_write_bytes
from include.paths import DataPath, as_data_path

__all__ = ["FILES", "compute_totals", "history_entry", "history_point", "write_all", "write_scan"]

#: Report key -> file name (the keys of :func:`write_all`'s result).
FILES = {
    "json": "findings.json",
    "csv": "findings.csv",
    "sarif": "findings.sarif",
    "ocsf": "findings.ocsf.json",
    "html": "report.html",
}


def _validation_dict(validation: Any) -> dict[str, Any] | None:
    """The full validation summary; a short form (XCom) is completed from its ``validation.json``."""
    if validation is None:
        return None
    if hasattr(validation, "to_dict"):
        return dict(validation.to_dict())
    data = dict(validation)
    results = data.get("results_path")
    if "suites" not in data and results and Path(results).is_file():
        data = {**json.loads(Path(results).read_text()), **{k: v for k, v in data.items() if k != "failed"}}
    data.setdefault("suites", [])
    data.setdefault("failures", [])
    return data


def _docs_href(validation: Mapping[str, Any] | None, report_dir: DataPath) -> str | None:
    path = (validation or {}).get("html_path")
    if not path:
        return None
    try:  # lexical: a local folder, or two URLs under one object-store data root
        return Path(os.path.relpath(str(path), str(report_dir))).as_posix()
    except ValueError:  # another drive (Windows): fall back to a file URI
        return Path(path).resolve().as_uri()


def write_all(
    findings: Iterable[Finding | Mapping[str, Any]],
    *,
    scan_id: str,
    scanned_at: datetime | str,
    out_dir: DataPath | str,
    history: Sequence[Mapping[str, Any]] = (),
    validation: Any = None,
    latest_dir: DataPath | str | None = None,
    rules: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Write every report for one scan into ``out_dir`` and ``latest_dir``; return ``{key: path}``.

    ``findings``: Finding objects or their dicts. ``validation``: a ``ValidationSummary`` or its dict.
    ``rules``: optional rule metadata by rule id (``rationale``, ``help_uri`` / ``references``) for the
    SARIF rule descriptors. Returned keys: ``json``, ``csv``, ``sarif``, ``ocsf``, ``html`` (the per-run
    files) and ``latest`` (the latest folder).
    """
    items = as_findings(findings)
    scanned = iso_utc(scanned_at) or ""
    out = as_data_path(out_dir)  # a folder, or a place under an object-store data root (include.paths)
    latest = as_data_path(latest_dir) if latest_dir is not None else out.parent / "latest"
    totals = compute_totals(items)
    validation_data = _validation_dict(validation)
    trend = list(history)
    if not trend or str(trend[-1].get("scan_id")) != scan_id:
        trend.append(history_entry(items, scan_id=scan_id, scanned_at=scanned))

    scan = {"scan_id": scan_id, "scanned_at": scanned}
    validation_brief = (
        None
        if validation_data is None
        else {
            k: validation_data.get(k)
            for k in ("success", "statistics", "html_path", "results_path", "renderer", "records", "seconds")
        }
        | {"failed": [f"{f['suite']}: {f['expectation']}({f.get('column') or ''})" for f in validation_data.get("failures", [])]}
    )
    shared = {
        "json": render_json(items, scan=scan, totals=totals, validation=validation_brief),
        "csv": render_csv(items),
        "sarif": render_sarif(
            items,
            scan_id=scan_id,
            scanned_at=scanned,
            totals=totals,
            rules=rules,
            validation_success=None if validation_data is None else bool(validation_data.get("success")),
        ),
        "ocsf": render_ocsf(items, scan_id=scan_id, scanned_at=scanned),
    }
    paths: dict[str, str] = {}
    for directory in (out, latest):
        for key, text in shared.items():
            atomic_write_bytes(directory / FILES[key], text.encode("utf-8"))
        html = render_html(
            items,
            scan_id=scan_id,
            scanned_at=scanned,
            totals=totals,
            history=trend,
            validation=validation_data,
            docs_href=_docs_href(validation_data, directory),
        )
        atomic_write_bytes(directory / FILES["html"], html.encode("utf-8"))
    for key, name in FILES.items():
        paths[key] = str(out / name)
    paths["latest"] = str(latest)
    return paths


def write_scan(
    scan_path: DataPath | str,
    *,
    validation: Any = None,
    out_dir: DataPath | str | None = None,
    latest_dir: DataPath | str | None = None,
) -> dict[str, str]:
    """:func:`write_all` for a scan saved by ``include.compliance.store.save_scan``.

    Reads ``scans/<scan_id>/findings.json``, the store's ``history.jsonl`` (lines up to this scan) and
    the rule registry's rationale; writes into ``scans/<scan_id>/reports`` and
    ``<compliance dir>/reports/latest`` unless told otherwise.
    """
    path = as_data_path(scan_path)
    document = json.loads(path.read_text())
    compliance_root = path.parent.parent.parent  # <compliance>/scans/<scan_id>/findings.json
    history_file = compliance_root / "history.jsonl"
    history: list[dict[str, Any]] = []
    if history_file.exists():
        lines = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
        lines.sort(key=lambda line: (str(line.get("scanned_at", "")), str(line.get("scan_id", ""))))
        for line in lines:
            history.append(line)
            if line.get("scan_id") == document["scan_id"]:
                break
    from include.compliance import registry

    registry.load_rules()
    rules = {
        rule.meta.id: {"title": rule.meta.title, "rationale": rule.meta.rationale, "remediation": rule.meta.remediation}
        for rule in registry.all_rules()
    }
    return write_all(
        document["findings"],
        scan_id=document["scan_id"],
        scanned_at=document["scanned_at"],
        out_dir=as_data_path(out_dir) if out_dir is not None else path.parent / "reports",
        latest_dir=as_data_path(latest_dir) if latest_dir is not None else compliance_root / "reports" / "latest",
        history=history,
        validation=validation,
        rules=rules,
    )
