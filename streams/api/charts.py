"""Charts of the rule report as SVG drawn on the server: no chart library, no script, nothing fetched.

SVG in the page needs neither JavaScript nor a network, satisfies the strict
Content-Security-Policy (colours come from classes in workbench.css, never
from style attributes) and prints. Every text in a chart is escaped here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

PALETTE = 12
"""Classes c0..c11 fill the series (workbench.css); the lines of line_chart take s0..s11 (stroke)."""


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
    parts += _day_ticks(days, lambda i: left + i * step + step / 2, height - 10)
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


def _open(width: float, height: float, title: str, kind: str) -> str:
    return (
        f'<svg class="chart {kind}" viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
    )


def line_chart(
    days: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    title: str,
    *,
    width: int = 720,
    height: int = 220,
) -> str:
    """One line per series over the days (e.g. alerts per day under two rules files), with a legend.

    Each line is a `polyline` of class `line s{k}` carrying `data-series`; up
    to two months of days also get a dot per day with its value as a tooltip.
    """
    if not days or not series:
        return ""
    left, right, top, bottom, legend_h = 44, 8, 10, 24, 22
    plot_w, plot_h = width - left - right, height - top - bottom - legend_h
    peak = max((v for _, values in series for v in values), default=0) or 1
    step = plot_w / len(days)
    base = top + plot_h

    def x(i: int) -> float:
        return left + (i + 0.5) * step

    def y(v: float) -> float:
        return base - plot_h * v / peak

    parts = [
        _open(width, height, title, "lines"),
        f'<line class="axis" x1="{left}" y1="{base}" x2="{width - right}" y2="{base}"/>',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{width - right}" y2="{top}"/>',
        f'<text class="tick" x="{left - 6}" y="{top + 4}" text-anchor="end">{escape(_fmt(peak))}</text>',
        f'<text class="tick" x="{left - 6}" y="{base}" text-anchor="end">0</text>',
    ]
    dots = len(days) <= 62
    for k, (name, values) in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline class="line s{k % PALETTE}" data-series="{escape(name)}" points="{points}"/>')
        if dots:
            for i, v in enumerate(values):
                tip = f"{days[i]} {name}: {_fmt(v)}"
                parts.append(
                    f'<circle class="dot c{k % PALETTE}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5">'
                    f"<title>{escape(tip)}</title></circle>"
                )
    parts += _day_ticks(days, x, base + 16)
    spacing = max(110, (width - left) // len(series))
    for k, (name, values) in enumerate(series):
        lx, ly = left + k * spacing, height - legend_h + 6
        total = _fmt(sum(values))
        parts.append(f'<rect class="c{k % PALETTE}" x="{lx}" y="{ly}" width="12" height="12"/>')
        parts.append(f'<text class="legend" x="{lx + 16}" y="{ly + 11}">{escape(f"{name} ({total})")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def paired_bar_chart(
    rows: Sequence[tuple[str, Sequence[float | None]]], series: Sequence[str], title: str, *, unit: str = ""
) -> str:
    """Horizontal bars, one group per row and one bar per series in it (e.g. A against B), on one scale."""
    if not rows or not series:
        return ""
    width, bar_h, gap, label_w, legend_h = 720, 14, 10, 220, 22
    group_h = bar_h * len(series) + gap
    peak = max((v for _, values in rows for v in values if v is not None), default=0.0) or 1.0
    height = legend_h + group_h * len(rows) + 4
    parts = [_open(width, height, title, "bars")]
    lx = label_w
    for k, name in enumerate(series):
        parts.append(f'<rect class="c{k % PALETTE}" x="{lx}" y="4" width="12" height="12"/>')
        parts.append(f'<text class="legend" x="{lx + 16}" y="15">{escape(name)}</text>')
        lx += max(60, 7 * len(name) + 36)
    for i, (label, values) in enumerate(rows):
        y0 = legend_h + i * group_h
        mid = y0 + bar_h * len(series) / 2 + 4
        parts.append(f'<text class="legend" x="{label_w - 8}" y="{mid:.1f}" text-anchor="end">{escape(label)}</text>')
        for k, value in enumerate(values):
            y = y0 + k * bar_h
            if value is None:
                parts.append(f'<text class="tick" x="{label_w + 4}" y="{y + bar_h - 3}">\u2013</text>')
                continue
            w = (width - label_w - 90) * value / peak
            shown = f"{_fmt(value)} {unit}".strip()
            parts.append(
                f'<rect class="c{k % PALETTE}" data-series="{escape(series[k])}" x="{label_w}" y="{y + 1}" '
                f'width="{w:.1f}" height="{bar_h - 2}"><title>{escape(f"{series[k]}: {shown}")}</title></rect>'
            )
            parts.append(f'<text class="tick" x="{label_w + w + 6:.1f}" y="{y + bar_h - 3}">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def difference_chart(days: Sequence[str], values: Sequence[float], title: str, *, width: int = 720) -> str:
    """Bars up from a zero line where a value is positive (class c1) and down where negative (c0), per day.

    For B minus A: what a change adds or removes each day stands out even
    when both series are large and nearly equal.
    """
    if not days or not any(values):
        return ""
    height, left, right, top, bottom = 160, 44, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(abs(v) for v in values) or 1
    zero = top + plot_h / 2
    step = plot_w / len(days)
    bar = max(1.0, step * 0.8)
    parts = [
        _open(width, height, title, "difference"),
        f'<line class="axis" x1="{left}" y1="{zero}" x2="{width - right}" y2="{zero}"/>',
        f'<text class="tick" x="{left - 6}" y="{top + 8}" text-anchor="end">+{escape(_fmt(peak))}</text>',
        f'<text class="tick" x="{left - 6}" y="{zero + 4}" text-anchor="end">0</text>',
        f'<text class="tick" x="{left - 6}" y="{top + plot_h}" text-anchor="end">\u2212{escape(_fmt(peak))}</text>',
    ]
    for i, v in enumerate(values):
        if not v:
            continue
        h = (plot_h / 2) * abs(v) / peak
        x = left + i * step + (step - bar) / 2
        y = zero - h if v > 0 else zero
        sign = "+" if v > 0 else "\u2212"
        parts.append(
            f'<rect class="{"c1" if v > 0 else "c0"}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
            f"<title>{escape(f'{days[i]}: {sign}{_fmt(abs(v))}')}</title></rect>"
        )
    parts += _day_ticks(days, lambda i: left + i * step + step / 2, height - 8)
    parts.append("</svg>")
    return "".join(parts)


def _day_ticks(days: Sequence[str], x: Callable[[int], float], y: float) -> list[str]:
    """About six labels under a chart's days (month-day), at the x of day i."""
    every = max(1, len(days) // 6)
    return [
        f'<text class="tick" x="{x(i):.1f}" y="{y}" text-anchor="middle">{escape(days[i][5:])}</text>'
        for i in range(0, len(days), every)
    ]
