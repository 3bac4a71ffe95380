"""The dashboard page: gather each section the user may see, render it as one server-side HTML page.

Plain HTML and inline SVG (include/charts.py): no JavaScript, nothing fetched from elsewhere, readable
in the Airflow UI's frame and on its own at ``/runbooks-dashboard/``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from include.charts import bar_chart, line_chart
from include.dashboard import data
from include.dashboard.registry import RUNBOOKS, SECTIONS, Section, runbooks_of

Approvals = Callable[[Collection[str] | None], list[dict[str, Any]]]


def visible_sections(allowed: Collection[str] | None) -> list[Section]:
    """Sections with at least one runbook the user may read (None: every section)."""
    return [s for s in SECTIONS if allowed is None or any(r in allowed for r in runbooks_of(s))]


def gather(allowed: Collection[str] | None, selection: data.AuditFilter, approvals: Approvals,
           ui_root: str = "") -> dict[str, Any]:
    """Every visible section's data (``allowed``: the DAG ids the user may read; None: all).

    ``ui_root``: the Airflow UI's root path, for links into it."""
    sections = visible_sections(allowed)
    view: dict[str, Any] = {"sections": sections, "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                            "ui_root": ui_root}
    if "compliance" in sections:
        view["compliance"] = data.compliance()
    if "backup" in sections:
        view["backup"] = data.backups()
    if "failover" in sections:
        view["failover"] = data.failovers(allowed)
    if "approvals" in sections:
        view["approvals"] = approvals(allowed)
    if "audit" in sections:
        view["audit"] = data.audit(selection, allowed)
    view["runbooks"] = sorted(r for r in RUNBOOKS if allowed is None or r in allowed)
    return view


def duration(seconds: float | None) -> str:
    """``42.3 s``, ``12 min``, ``3.5 h``, ``2.0 d``; ``-`` for None."""
    if seconds is None:
        return "-"
    value = float(seconds)
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def when(moment: Any) -> str | None:
    """An ISO-8601 UTC time as ``YYYY-MM-DD HH:MM:SS`` (what a person reads); None stays None."""
    if moment in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
    except ValueError:
        return str(moment)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any, css: str = "") -> str:
    if value is None or value == "":
        return '<td class="none">-</td>'
    text = str(value)
    return f'<td class="{css}">{escape(text)}</td>' if css else f"<td>{escape(text)}</td>"


def _table(head: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---- sections ----------------------------------------------------------------------------------------------
def compliance_html(view: Mapping[str, Any]) -> str:
    if not view["scan_id"]:
        return '<p class="empty">No compliance scan yet: run compliance_scan.</p>'
    rows = []
    for row in view["clouds"]:
        severities = ", ".join(f"{k} {v}" for k, v in sorted(row["fail_by_severity"].items())) or "none"
        score = row["posture"]
        rows.append(f'<tr data-cloud="{escape(row["cloud"])}">' + _cell(row["cloud"])
                    + _cell(f"{score}%" if score is not None else None, "num " + ("ok" if (score or 0) >= 80 else "bad"))
                    + _cell(row["pass"], "num") + _cell(row["fail"], "num") + _cell(row["waived"], "num")
                    + _cell(row["new"], "num") + _cell(severities) + "</tr>")
    bars = [(row["cloud"], float(row["posture"] or 0), None, (row["posture"] or 0) >= 80) for row in view["clouds"]]
    trend = view["trend"]
    clouds = sorted({cloud for point in trend for cloud in point["posture"]})
    labels = [str(when(point["scanned_at"])) for point in trend]
    chart = line_chart("Posture per cloud over the saved scans (% of checks passing)", labels,
                       {c: [p["posture"].get(c) for p in trend] for c in clouds}, unit="%", top=100.0)
    return (f'<p>Latest scan <code>{escape(view["scan_id"])}</code> at {escape(str(when(view["scanned_at"])))} UTC: '
            f'{view["totals"]["findings"]} checks. Posture = checks passing / checks evaluated (waived count as '
            "not passing).</p>"
            + _table(("cloud", "posture", "pass", "fail", "waived", "new fails", "failing by severity"), rows, "")
            + '<div class="charts">' + bar_chart("Posture per cloud, latest scan (%)", bars, unit="%") + chart
            + "</div>")


def backup_html(view: Mapping[str, Any]) -> str:
    rows, bars = [], []
    for p in view["policies"]:
        last, drill = p["last_backup"] or {}, p["last_drill"] or {}
        objective = p["rpo_objective_seconds"]
        age = last.get("rpo_age_seconds")
        drill_state = None if not drill else ("passed" if drill.get("success") else "FAILED")
        rows.append(
            f'<tr data-policy="{escape(p["policy"])}">' + _cell(p["policy"]) + _cell(f'{p["source"]} -> {p["destination"]}')
            + _cell(duration(objective), "num") + _cell(when(last.get("time")), "when") + _cell(last.get("status"))
            + _cell(duration(age), "num " + ("bad" if last.get("rpo_breached") else "ok"))
            + _cell(when(drill.get("time")), "when") + _cell(drill_state, "ok" if drill.get("success") else "bad")
            + _cell(duration(drill.get("rpo_seconds")), "num " + ("ok" if drill.get("rpo_met") else "bad"))
            + _cell(duration(drill.get("restore_seconds")), "num") + "</tr>")
        measured = drill.get("rpo_seconds") if drill.get("rpo_seconds") is not None else age
        if measured is not None:
            bars.append((p["policy"], float(measured), float(objective), float(measured) <= objective))
    # minutes unless some objective is at least three hours
    scale, unit = (3600, " h") if any(b[2] >= 3 * 3600 for b in bars if b[2]) else (60, " min")
    scaled = [(name, value / scale, None if limit is None else limit / scale, good) for name, value, limit, good in bars]
    chart = bar_chart(f"RPO: age of the newest restorable point (last drill, else last backup) against the "
                      f"objective (dashed), in{unit}", scaled, unit=unit) if bars else ""
    return _table(("policy", "copies", "RPO objective", "last backup (UTC)", "status", "RPO age then", "last drill (UTC)",
                   "drill", "drill RPO", "restore time"), rows, "No backup policy configured.") + chart


def failover_html(view: Mapping[str, Any]) -> str:
    rows = [
        f'<tr data-runbook="{escape(str(r["runbook"]))}">' + _cell(when(r["written_at"]), "when") + _cell(r["runbook"]) + _cell(r["service"])
        + _cell(r["status"], "ok" if r["status"] in ("passed", "failed_over", "failed_back") else "bad" if r["status"] in (
            "failed", "refused") else "") + _cell("yes" if r["dry_run"] else "no") + _cell(duration(r["rto_seconds"]), "num")
        + _cell(duration(r["our_steps_seconds"]), "num") + _cell(r["approver"]) + _cell(r["run_id"]) + "</tr>"
        for r in view["runs"]]
    measured = [r for r in reversed(view["runs"]) if r["rto_seconds"] is not None and not r["dry_run"]]
    chart = ""
    if measured:
        chart = line_chart("RTO per failover / drill (seconds, outage or trigger to verified)",
                           [str(when(r["written_at"])) for r in measured],
                           {"RTO": [float(r["rto_seconds"]) for r in measured],
                            "our steps": [float(r["our_steps_seconds"] or 0) for r in measured]}, unit=" s")
    return _table(("time (UTC)", "runbook", "service", "status", "dry run", "RTO", "our steps", "approver", "run"), rows,
                  "No failover, failback or drill has run yet.") + chart


def approvals_html(rows: Sequence[Mapping[str, Any]], ui_root: str) -> str:
    every = f"{ui_root.rstrip('/')}/required_actions?response_received=false"
    body = [
        "<tr>" + _cell(when(r["waiting_since"]), "when") + _cell(r["dag_id"]) + _cell(r["run_id"]) + _cell(r["task_id"])
        + _cell(r["subject"]) + _cell(", ".join(r["assignees"]) or "anyone allowed")
        + f'<td><a href="{escape(r["url"])}">answer</a></td></tr>' for r in rows]
    return _table(("waiting since (UTC)", "runbook", "run", "task", "request", "assignees", ""), body,
                  "Nothing is waiting for an approval.") + (
        f'<p>All requests: <a href="{escape(every)}">Browse, Required Actions</a></p>')


def audit_html(view: Mapping[str, Any], runbooks: Sequence[str], selection: data.AuditFilter) -> str:
    options = "".join(f'<option value="{escape(r)}"{" selected" if r == selection.runbook else ""}>{escape(r)}</option>'
                      for r in runbooks)
    form = (
        '<form method="get" action="./#audit" class="filter">'
        f'<label>resource <input name="resource" value="{escape(selection.resource)}" placeholder="part of the id"></label>'
        f'<label>runbook <select name="runbook"><option value="">any</option>{options}</select></label>'
        f'<label>from <input type="date" name="since" value="{escape(selection.since)}"></label>'
        f'<label>to <input type="date" name="until" value="{escape(selection.until)}"></label>'
        f'<label><input type="checkbox" name="everything"{" checked" if selection.everything else ""}> '
        "also dry runs and unchanged</label>"
        '<button type="submit">Filter</button> <a href="./#audit">reset</a></form>')
    rows = [
        "<tr>" + _cell(when(r["time"]), "when") + _cell(r["runbook"]) + _cell(r["step"]) + _cell(r["action"])
        + _cell(r["resource"]) + _cell(r["outcome"], "bad" if r["outcome"] == "failed" else "")
        + _cell("yes" if r["dry_run"] else "no") + _cell(r["actor"]) + _cell(r["approver"]) + _cell(r["run_id"])
        + _cell(r["error"]) + "</tr>" for r in view["rows"]]
    shown = len(view["rows"])
    note = f'<p class="count">{view["matched"]} record(s) match' + (
        f", the newest {shown} shown" if shown < view["matched"] else "") + ".</p>"
    return form + note + _table(("time (UTC)", "runbook", "step", "action", "resource", "outcome", "dry run", "actor",
                                 "approver", "run", "error"), rows, "No audit record matches.")


def index_html(runbooks: Sequence[str]) -> str:
    rows = [f'<tr data-runbook="{escape(r)}">' + _cell(r)
            + f'<td><a href="#{RUNBOOKS[r].section}">{escape(SECTIONS[RUNBOOKS[r].section])}</a></td>'
            + _cell(RUNBOOKS[r].shows) + _cell("yes" if RUNBOOKS[r].approvals else "no") + "</tr>" for r in runbooks]
    return _table(("runbook", "section", "what it shows", "asks for approval"), rows, "")


_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.2rem 1.6rem;color:#1d2330;"
    "background:#fafbfc}h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;"
    "border-bottom:1px solid #d5d9e0;padding-bottom:.2rem}nav a{margin-right:1rem}table{border-collapse:collapse;"
    "font-size:13px;background:#fff;margin:.4rem 0}td,th{border:1px solid #d5d9e0;padding:3px 7px;text-align:left;"
    "vertical-align:top}th{background:#f0f2f5}.num{text-align:right;white-space:nowrap}.ok{color:#17622f}"
    ".bad{color:#a11;font-weight:600}.when{white-space:nowrap}.empty{color:#666;font-style:italic}.charts{display:flex;flex-wrap:wrap;"
    "gap:1rem}svg.chart{background:#fff;border:1px solid #e3e6ea;margin:.5rem 0}svg text{font-size:11px;fill:#444}"
    "form.filter{display:flex;flex-wrap:wrap;gap:.8rem;align-items:end;margin:.4rem 0}form.filter label{display:flex;"
    "flex-direction:column;font-size:12px;color:#444}code{font-size:12px}.meta{color:#555;font-size:12px}"
)


def render(view: Mapping[str, Any], selection: data.AuditFilter, user: str) -> str:
    """The whole page for one user."""
    parts = {
        "compliance": lambda: compliance_html(view["compliance"]),
        "backup": lambda: backup_html(view["backup"]),
        "failover": lambda: failover_html(view["failover"]),
        "approvals": lambda: approvals_html(view["approvals"], view["ui_root"]),
        "audit": lambda: audit_html(view["audit"], view["runbooks"], selection),
    }
    sections: list[Section] = view["sections"]
    nav = "".join(f'<a href="#{s}">{escape(SECTIONS[s])}</a>' for s in sections) + '<a href="#runbooks">Runbooks</a>'
    body = "".join(f'<section id="{s}" data-section="{s}"><h2>{escape(SECTIONS[s])}</h2>{parts[s]()}</section>'
                   for s in sections)
    if not sections:
        body = '<p class="empty">You may not read any runbook, so there is nothing to show.</p>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1"><title>Runbooks dashboard</title>'
        f"<style>{_STYLE}</style></head><body><h1>Runbooks dashboard</h1>"
        f'<p class="meta">Signed in as {escape(user)} · generated {escape(view["generated_at"])} UTC · '
        f'<a href="./?{escape(urlencode(selection.query()))}">refresh</a></p><nav>{nav}</nav>{body}'
        f'<section id="runbooks" data-section="runbooks"><h2>Runbooks</h2>{index_html(view["runbooks"])}</section>'
        "</body></html>"
    )

