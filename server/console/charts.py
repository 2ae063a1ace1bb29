"""Small inline SVG line charts, drawn on the server: no chart library, no script, no network.

Why on the server: the page re-fetches a chart's HTML fragment when a round
lands (``console.js``), so the browser needs no drawing code at all and the
chart reads the same without JavaScript (the page is simply not live then).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 460, 170
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 24, 26


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def line_chart(title: str, series: Mapping[str, Sequence[tuple[float, float]]], *, chart_id: str = "") -> str:
    """An SVG of each named series of (x, y) points on shared axes, with its title, legend and axis bounds.

    Non-finite points are left out; with no point at all the chart says "no rounds yet".
    """
    clean = {name: [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]
             for name, points in series.items()}
    points = [p for pts in clean.values() for p in pts]
    id_attr = f' id="{escape(chart_id)}"' if chart_id else ""
    head = (f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"{id_attr}'
            f' aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title><text x="{LEFT}" y="15" class="chart-title">{escape(title)}</text>')
    if not points:
        return head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="chart-empty">no rounds yet</text></svg>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y1 = y0 + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [head,
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" class="axis"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" class="axis"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 4}" text-anchor="end" class="tick">{_fmt(y1)}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" class="tick">{_fmt(y0)}</text>',
             f'<text x="{LEFT}" y="{HEIGHT - 8}" class="tick">round {_fmt(x0)}</text>',
             f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end" class="tick">{_fmt(x1)}</text>']
    for index, (name, pts) in enumerate(clean.items()):
        if not pts:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline class="series series-{index}" points="{path}"><title>{escape(name)}</title></polyline>')
        if len(pts) == 1:
            x, y = pts[0]
            parts.append(f'<circle class="series-dot series-{index}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3"/>')
        legend_x = LEFT + 150 + 130 * index
        parts.append(f'<rect x="{legend_x}" y="7" width="10" height="10" class="swatch series-{index}"/>'
                     f'<text x="{legend_x + 14}" y="16" class="legend">{escape(name)}</text>')
    return "".join(parts) + "</svg>"
