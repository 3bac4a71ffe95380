"""Inline SVG charts (no JavaScript, no CDN): a line chart over time and a horizontal bar chart.

Every chart is an ``<svg role="img">`` with an ``aria-label`` and a ``<title>`` per point or bar, so a
screen reader and a hover both tell the value. One implementation for every page that draws one: the
runbooks dashboard (include/dashboard/), a backup policy's history (include/backup/report.py) and the
restore drills' report (include/backup/drill.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
GOOD, BAD, LIMIT = "#2e8540", "#c0392b", "#c0392b"


def line_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, unit: str,
               top: float | None = None, width: int = 640, height: int = 220,
               limits: Mapping[str, float] | None = None, failed: Mapping[str, Sequence[bool]] | None = None,
               colours: Mapping[str, str] | None = None, empty: str = "no data yet") -> str:
    """One line per series over ``labels`` (x, in order); None is a gap. ``top``: fixed y maximum.

    ``limits``: a dashed line at a series' objective (in its colour); ``failed``: per point of a series, True
    draws it with a red ring and "(FAILED)" in its title; ``colours``: a fixed colour per series; ``empty``:
    the text shown when there is no label.
    """
    left, right, upper, bottom = 56, 140, 14, 34
    plot_w, plot_h = width - left - right, height - upper - bottom
    limits, failed, colours = limits or {}, failed or {}, colours or {}
    values = [v for points in series.values() for v in points if v is not None]
    vmax = top if top is not None else max([1.0, *values, *limits.values()]) * 1.1
    count = len(labels)

    def x(i: int) -> float:
        return left + (plot_w / 2 if count <= 1 else plot_w * i / (count - 1))

    def y(v: float) -> float:
        return upper + plot_h * (1 - v / vmax)

    out = [f'<svg class="chart" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
           f'<rect x="{left}" y="{upper}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#d5d9e0"/>']
    if not count:
        out.append(f'<text x="{left + 8}" y="{upper + plot_h / 2:.1f}">{escape(empty)}</text></svg>')
        return "".join(out)
    for fraction in (0.0, 0.5, 1.0):
        value = vmax * fraction
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eef0f3"/>'
                   f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}{escape(unit)}</text>')
    out.append(f'<text x="{left}" y="{height - 14}">{escape(labels[0])}</text>')
    if count > 1:
        out.append(f'<text x="{left + plot_w}" y="{height - 14}" text-anchor="end">{escape(labels[-1])}</text>')
    for n, (name, points) in enumerate(series.items()):
        colour = colours.get(name, COLOURS[n % len(COLOURS)])
        bad = failed.get(name, ())
        coords = [(x(i), y(v), v, labels[i], i < len(bad) and bad[i])
                  for i, v in enumerate(points) if v is not None and i < count]
        if len(coords) > 1:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _, _, _ in coords)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for cx, cy, v, label, is_bad in coords:
            ring = f' stroke="{BAD}" stroke-width="2"' if is_bad else ""
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}"{ring}>'
                       f'<title>{escape(name)} {escape(label)}: {v:.3g}{escape(unit)}{" (FAILED)" if is_bad else ""}'
                       "</title></circle>")
        if name in limits:
            out.append(f'<line class="limit" x1="{left}" x2="{left + plot_w}" y1="{y(limits[name]):.1f}" '
                       f'y2="{y(limits[name]):.1f}" stroke="{colour}" stroke-dasharray="5 4">'
                       f'<title>{escape(name)} objective {limits[name]:.3g}{escape(unit)}</title></line>')
        ly = upper + 12 + n * 16
        out.append(f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + plot_w + 28}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, bars: Sequence[tuple[str, float, float | None, bool]], *, unit: str,
              width: int = 640, bar_height: int = 22) -> str:
    """Horizontal bars ``(label, value, limit, good)``: a dashed mark at each bar's limit; red when not good."""
    left, right, upper = 210, 90, 8
    height = upper * 2 + max(1, len(bars)) * (bar_height + 8)
    plot_w = width - left - right
    vmax = max([1e-9, *(v for _, v, _, _ in bars), *(lim for _, _, lim, _ in bars if lim is not None)]) * 1.05
    out = [f'<svg class="chart" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>']
    for i, (label, value, limit, good) in enumerate(bars):
        top = upper + i * (bar_height + 8)
        length = plot_w * value / vmax
        out.append(f'<text x="{left - 8}" y="{top + bar_height * 0.7:.1f}" text-anchor="end">{escape(label)}</text>'
                   f'<rect x="{left}" y="{top}" width="{length:.1f}" height="{bar_height}" '
                   f'fill="{GOOD if good else BAD}"><title>{escape(label)}: {value:.3g}{escape(unit)}</title></rect>'
                   f'<text x="{left + length + 6:.1f}" y="{top + bar_height * 0.7:.1f}">{value:.3g}{escape(unit)}</text>')
        if limit is not None:
            lx = left + plot_w * limit / vmax
            out.append(f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="{top - 2}" y2="{top + bar_height + 2}" stroke="{LIMIT}" '
                       f'stroke-width="2" stroke-dasharray="4 2"><title>objective {limit:.3g}{escape(unit)}</title></line>')
    out.append("</svg>")
    return "".join(out)
