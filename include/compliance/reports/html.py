"""report.html: one self-contained page a manager can read (inline CSS and SVG, no script, no fetch).

Every value that comes from a cloud, a rule or a waiver file goes through :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from include.compliance.model import SEVERITIES, Finding
from include.compliance.reports.common import (
    TOOL_NAME,
    TOOL_VERSION,
    controls_list,
    history_point,
    severity_rank,
)

#: Rows of the failing-findings table; the rest are in findings.csv / findings.json.
MAX_ROWS = 1000

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:1.5rem 2rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #d5d9e0;padding-bottom:.3rem}
.meta{color:#5b6475;font-size:.9rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:#fff;border:1px solid #d5d9e0;border-radius:6px;padding:.7rem 1rem;min-width:8.5rem}
.card .n{font-size:1.6rem;font-weight:600}.card .l{font-size:.8rem;color:#5b6475;text-transform:uppercase;letter-spacing:.03em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1.2rem}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.88rem}
th,td{border:1px solid #d5d9e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#eef0f4}td.num,th.num{text-align:right}
.sev{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.78rem;font-weight:600;color:#fff}
.sev-critical{background:#7a0b0b}.sev-high{background:#c0392b}.sev-medium{background:#d68910}.sev-low{background:#2874a6}.sev-info{background:#7f8c8d}
.ok{color:#17622f}.bad{color:#a11}.muted{color:#5b6475}
code{font-size:.8rem;word-break:break-all}
svg text{font-size:11px;fill:#5b6475}
.legend span{display:inline-block;margin-right:1rem;font-size:.85rem}
.legend i{display:inline-block;width:1.2rem;height:.25rem;vertical-align:middle;margin-right:.3rem}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _sev(severity: str) -> str:
    return f'<span class="sev sev-{_e(severity)}">{_e(severity)}</span>'


def _card(number: Any, label: str, css: str = "") -> str:
    return f'<div class="card"><div class="n {css}">{_e(number)}</div><div class="l">{_e(label)}</div></div>'


def trend_svg(history: Sequence[Mapping[str, Any]], *, width: int = 760, height: int = 240) -> str:
    """Inline SVG: failing and critical+high failing findings per scan, one point per history entry."""
    points = [history_point(entry) for entry in history]
    if not points:
        return '<p class="muted">No scan history yet: the trend appears from the second scan on.</p>'
    left, right, top, bottom = 48, 16, 14, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max(1, *(int(p["fail"]) for p in points), *(int(p["critical_high"]) for p in points))

    def x(i: int) -> float:
        return left + (plot_w / 2 if len(points) == 1 else plot_w * i / (len(points) - 1))

    def y(value: int) -> float:
        return top + plot_h * (1 - value / top_value)

    parts = [
        (
            f'<svg class="trend" role="img" aria-label="Failing findings per scan" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        ),
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d5d9e0"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = round(top_value * fraction)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eef0f4"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value}</text>')
    for key, color, css in (("fail", "#1d2330", "pt-fail"), ("critical_high", "#c0392b", "pt-ch")):
        coords = " ".join(f"{x(i):.1f},{y(p[key]):.1f}" for i, p in enumerate(points))
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for i, p in enumerate(points):
            label = "failing" if key == "fail" else "critical/high failing"
            parts.append(
                f'<circle class="pt {css}" cx="{x(i):.1f}" cy="{y(p[key]):.1f}" r="3.5" fill="{color}">'
                f"<title>{_e(p['scanned_at'] or p['scan_id'])}: {p[key]} {label}</title></circle>"
            )
    step = max(1, len(points) // 8)
    for i, p in enumerate(points):
        if i % step == 0 or i == len(points) - 1:
            label = (p["scanned_at"] or p["scan_id"])[:10]
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{_e(label)}</text>')
    parts.append("</svg>")
    legend = (
        '<div class="legend"><span><i style="background:#1d2330"></i>failing findings</span>'
        '<span><i style="background:#c0392b"></i>critical + high failing</span></div>'
    )
    return "".join(parts) + legend


def _status_table(title: str, rows: Mapping[str, Mapping[str, int]]) -> str:
    body = "".join(
        f"<tr><td>{_e(name)}</td><td class=\"num bad\">{c.get('fail', 0)}</td><td class=\"num\">{c.get('waived', 0)}</td>"
        f"<td class=\"num ok\">{c.get('pass', 0)}</td></tr>"
        for name, c in rows.items()
    ) or '<tr><td colspan="4" class="muted">none</td></tr>'
    return (
        f'<table><thead><tr><th>{_e(title)}</th><th class="num">Failing</th><th class="num">Waived</th>'
        f'<th class="num">Passing</th></tr></thead><tbody>{body}</tbody></table>'
    )


def _resource(f: Finding) -> str:
    return f"{_e(f.resource_name)}<br><code>{_e(f.resource_id)}</code>"


def _failing_table(findings: list[Finding]) -> str:
    failing = sorted(
        (f for f in findings if f.status == "fail"),
        key=lambda f: (severity_rank(f.severity), f.lifecycle != "new", f.rule_id, f.resource_id),
    )
    if not failing:
        return '<p class="ok">No failing findings.</p>'
    rows = []
    for f in failing[:MAX_ROWS]:
        controls = "<br>".join(_control(fw, c, title) for fw, c, title in controls_list(f))
        rows.append(
            f"<tr><td>{_sev(f.severity)}</td><td>{_e(f.lifecycle)}</td><td><b>{_e(f.title)}</b><br>"
            f"<code>{_e(f.rule_id)}</code></td><td>{_resource(f)}</td>"
            f"<td>{_e(f.cloud)} / {_e(f.target)}<br>{_e(f.region)}</td><td>{_e(f.detail)}</td>"
            f"<td>{_e(f.remediation)}</td><td>{controls}</td></tr>"
        )
    more = (
        f'<p class="muted">{len(failing) - MAX_ROWS} more failing findings are in findings.csv.</p>'
        if len(failing) > MAX_ROWS
        else ""
    )
    return (
        "<table><thead><tr><th>Severity</th><th>Lifecycle</th><th>Rule</th><th>Resource</th><th>Where</th>"
        "<th>Detail</th><th>Remediation</th><th>Controls</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + more
    )


def _control(framework: str, control: str, title: str | None) -> str:
    """``framework control``, with the control's catalogue title as a tooltip when it has one."""
    label = f"{_e(framework)} {_e(control)}"
    return f'<span title="{_e(title)}">{label}</span>' if title else label


def _controls_table(findings: list[Finding]) -> str:
    """Each framework control with failing findings: its title and how many resources fail it."""
    failing: dict[tuple[str, str], set[str]] = {}
    titles: dict[tuple[str, str], str | None] = {}
    for f in findings:
        if f.status != "fail":
            continue
        for framework, control, title in controls_list(f):
            failing.setdefault((framework, control), set()).add(f"{f.target}|{f.resource_id}")
            titles[(framework, control)] = title
    if not failing:
        return '<p class="ok">No framework control has failing findings.</p>'
    rows = "".join(
        f"<tr><td>{_e(framework)}</td><td>{_e(control)}</td><td>{_e(titles[(framework, control)] or '')}</td>"
        f'<td class="num bad">{len(failing[(framework, control)])}</td></tr>'
        for framework, control in sorted(failing)
    )
    return (
        '<table><thead><tr><th>Framework</th><th>Control</th><th>Title</th><th class="num">Failing resources</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _waived_table(findings: list[Finding]) -> str:
    waived = sorted((f for f in findings if f.status == "waived"), key=lambda f: (f.rule_id, f.resource_id))
    if not waived:
        return '<p class="muted">No waived findings.</p>'
    rows = "".join(
        f"<tr><td>{_sev(f.severity)}</td><td><b>{_e(f.title)}</b><br><code>{_e(f.rule_id)}</code></td>"
        f"<td>{_resource(f)}</td><td>{_e((f.waiver or {}).get('reason'))}</td>"
        f"<td>{_e((f.waiver or {}).get('owner'))}</td><td>{_e((f.waiver or {}).get('expires'))}</td></tr>"
        for f in waived
    )
    return (
        "<table><thead><tr><th>Severity</th><th>Rule</th><th>Resource</th><th>Reason</th><th>Owner</th>"
        f"<th>Expires</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _resolved_table(findings: list[Finding]) -> str:
    resolved = sorted((f for f in findings if f.lifecycle == "resolved"), key=lambda f: (f.rule_id, f.resource_id))
    if not resolved:
        return '<p class="muted">Nothing resolved since the previous scan.</p>'
    rows = "".join(
        f"<tr><td>{_sev(f.severity)}</td><td><b>{_e(f.title)}</b><br><code>{_e(f.rule_id)}</code></td>"
        f"<td>{_resource(f)}</td><td>{_e(f.first_seen)}</td></tr>"
        for f in resolved
    )
    return (
        "<table><thead><tr><th>Severity</th><th>Rule</th><th>Resource</th><th>First seen</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _validation_section(validation: Mapping[str, Any] | None, docs_href: str | None) -> str:
    if not validation:
        return '<p class="muted">Fact validation was not run for this scan.</p>'
    from include.compliance.validation import render_section

    return render_section(validation, docs_href=docs_href)


def render_html(
    findings: list[Finding],
    *,
    scan_id: str,
    scanned_at: str,
    totals: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    validation: Mapping[str, Any] | None = None,
    docs_href: str | None = None,
) -> str:
    """report.html: the self-contained page (cards, trend, totals, findings, controls, validation)."""
    status = totals["by_status"]
    severity = totals["by_severity"]
    lifecycle = totals["lifecycle"]
    pass_rate = "n/a" if totals.get("pass_rate") is None else f"{totals['pass_rate']}%"
    severity_rows = "".join(
        f'<tr><td>{_sev(s)}</td><td class="num">{severity.get(s, 0)}</td></tr>' for s in SEVERITIES
    )
    validation_ok = None if not validation else bool(validation.get("success"))
    cards = "".join(
        [
            _card(status["fail"], "failing", "bad" if status["fail"] else "ok"),
            _card(severity.get("critical", 0) + severity.get("high", 0), "critical + high", "bad"),
            _card(lifecycle["new"], "new"),
            _card(lifecycle["open"], "still open"),
            _card(lifecycle["resolved"], "resolved", "ok"),
            _card(status["waived"], "waived"),
            _card(pass_rate, "checks passing"),
            _card(
                "n/a" if validation_ok is None else ("pass" if validation_ok else "FAIL"),
                "fact validation",
                "" if validation_ok is None else ("ok" if validation_ok else "bad"),
            ),
        ]
    )
    links = " · ".join(
        f'<a href="{name}">{name}</a>'
        for name in ("findings.json", "findings.csv", "findings.sarif", "findings.ocsf.json")
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Compliance report {_e(scan_id)}</title><style>{_CSS}</style></head>
<body><main>
<h1>Cloud compliance report</h1>
<p class="meta">Scan <b>{_e(scan_id)}</b> at {_e(scanned_at)} · {totals['rules']} rules over {totals['resources']} resources ·
{totals['findings']} checks · {_e(TOOL_NAME)} {_e(TOOL_VERSION)}</p>
<div class="cards">{cards}</div>

<h2>Trend</h2>
{trend_svg(history)}

<h2>Totals</h2>
<div class="grid">
<table><thead><tr><th>Severity (failing)</th><th class="num">Findings</th></tr></thead><tbody>{severity_rows}</tbody></table>
{_status_table("Cloud", totals["by_cloud"])}
{_status_table("Framework", totals["by_framework"])}
<table><thead><tr><th>Lifecycle</th><th class="num">Findings</th></tr></thead><tbody>
<tr><td>new (failing, first seen in this scan)</td><td class="num">{lifecycle['new']}</td></tr>
<tr><td>open (failing, seen before)</td><td class="num">{lifecycle['open']}</td></tr>
<tr><td>resolved (passing now, failing before)</td><td class="num">{lifecycle['resolved']}</td></tr>
</tbody></table>
</div>

<h2>Failing findings</h2>
{_failing_table(findings)}

<h2>Failing framework controls</h2>
{_controls_table(findings)}

<h2>Waived findings</h2>
{_waived_table(findings)}

<h2>Resolved since the previous scan</h2>
{_resolved_table(findings)}

<h2 id="fact-validation">Fact validation (great_expectations)</h2>
{_validation_section(validation, docs_href)}

<h2>Machine-readable reports</h2>
<p>{links}</p>
</main></body></html>
"""
