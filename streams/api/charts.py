"""Charts of the rule report as SVG drawn on the server: no chart library, no script, nothing fetched.

SVG in the page needs neither JavaScript nor a network, satisfies the strict
Content-Security-Policy (colours come from classes in workbench.css, never
from style attributes) and prints. Every text in a chart is escaped here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PALETTE = 12
"""Classes c0..c11 in workbench.css colour the series."""


def _fmt(value: float) -> str:
    text = f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def per_day_chart(report: Mapping[str, Any], labels: Mapping[str, str], title: str) -> str:
    """Stacked bars: alerts per day, one colour per type, with a legend."""
    days: Sequence[str] = report["days"]
    types = [t for t in report["types"] if t["alerts"]]
    if not days or not types:
        return ""
    width, height, left, bottom, top = 720, 240, 44, 28, 10
    totals = [sum(t["per_day"][i]["alerts"] for t in types) for i in range(len(days))]
    peak = max(totals) or 1
    plot_w, plot_h = width - left - 8, height - top - bottom
    step = plot_w / len(days)
    bar = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 22 * ((len(types) + 3) // 4)}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 6}" y="{top + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, day in enumerate(days):
        y = top + plot_h
        x = left + i * step + (step - bar) / 2
        for k, t in enumerate(types):
            n = t["per_day"][i]["alerts"]
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            tip = f"{day} {labels.get(t['type'], t['type'])}: {n}"
            parts.append(
                f'<rect class="c{k % PALETTE}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    label_every = max(1, len(days) // 6)
    for i in range(0, len(days), label_every):
        x = left + i * step + step / 2
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{escape(days[i][5:])}</text>'
        )
    for k, t in enumerate(types):
        col, row = k % 4, k // 4
        x, y = left + col * 170, height + 8 + row * 22
        parts.append(f'<rect class="c{k % PALETTE}" x="{x}" y="{y}" width="12" height="12"/>')
        parts.append(
            f'<text class="legend" x="{x + 16}" y="{y + 11}">{escape(labels.get(t["type"], t["type"]))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(rows: Sequence[tuple[str, float | None]], title: str, *, percent: bool = False, unit: str = "") -> str:
    """Horizontal bars, one per row (label, value); a missing value is drawn as a dash."""
    if not rows:
        return ""
    width, row_h, label_w = 720, 24, 220
    peak = 1.0 if percent else max((v for _, v in rows if v is not None), default=0.0) or 1.0
    height = row_h * len(rows) + 8
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    ]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * row_h
        parts.append(f'<text class="legend" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text class="tick" x="{label_w + 4}" y="{y + 15}">\u2013</text>')
            continue
        w = (width - label_w - 90) * value / peak
        shown = f"{value * 100:.0f}%" if percent else f"{_fmt(value)} {unit}".strip()
        parts.append(f'<rect class="c{i % PALETTE}" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}"/>')
        parts.append(f'<text class="tick" x="{label_w + w + 6:.1f}" y="{y + 15}">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)
