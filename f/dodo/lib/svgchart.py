"""The revenue chart as SVG: crisp at any size, real text, currency-formatted axes.

Windmill renders a result part `{"svg": "<svg ...>"}` (windmilldocs
docs/core_concepts/19_rich_display_rendering: svg); the report e-mail carries the same
markup inline. One panel per currency (amounts are never converted), each with its own
scale: a y axis of three round ticks in the currency's true decimals, a date every
week on the x axis, the 30-day total in the panel's title. Pure Python, no plotting
library to import in the report's job.

Slack shows an uploaded SVG as a file to download, with no preview; it previews PNG.
`png` draws this same SVG as PNG with resvg (a Rust renderer in a wheel: no system
library on the worker, a few ms of import; matplotlib, the alternative, would redraw
the chart and costs far more, docs/internals.md) and the Roboto font shipped by
font-roboto, never the worker's fonts: a worker image may have none, and the text
would silently vanish.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from html import escape

from f.dodo.lib.money import EXPONENTS

WIDTH, PANEL_H, LEFT, RIGHT, TOP, BOTTOM, GAP = 760, 150, 96, 16, 44, 26, 30
FONT = "font-family=\"Helvetica, Arial, sans-serif\""
INK, MUTED, GRID, BAR = "#222", "#666", "#e3e3e3", "#2e6fbf"


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency.upper(), 2)  # a code the table lacks: shown with 2 decimals


def amount(minor: int | Decimal, currency: str) -> str:
    """Major units with thousands separators in the currency's decimals: 12,345.60 / 1,000 / 1.234."""
    exp = exponent(currency)
    value = Decimal(minor).scaleb(-exp)
    return f"{value:,.{exp}f}"


def nice_top(peak: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above `peak` (axis top), at least 1."""
    if peak <= 0:
        return Decimal(1)
    scale = Decimal(10) ** (len(str(int(peak))) - 1)
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if step * scale >= peak:
            return step * scale
    return 10 * scale


def revenue_chart(series: dict[str, list[int]], last_day: date, title: str) -> str:
    """SVG of daily gross (minor units, oldest first, ending on `last_day`) per currency."""
    currencies = sorted(series)
    days = max((len(v) for v in series.values()), default=0) or 1
    height = TOP + max(len(currencies), 1) * (PANEL_H + BOTTOM + GAP)
    plot_w = WIDTH - LEFT - RIGHT
    slot = plot_w / days
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text x="{LEFT}" y="24" {FONT} font-size="16" font-weight="bold" fill="{INK}">{escape(title)}</text>']
    for i, cur in enumerate(currencies):
        values = series.get(cur, [])
        y0 = TOP + i * (PANEL_H + BOTTOM + GAP) + 20
        top = nice_top(Decimal(max(values, default=0)).scaleb(-exponent(cur))) if values else Decimal(1)
        top_minor = top.scaleb(exponent(cur)) if values else Decimal(1)
        total = amount(sum(values), cur) if values else "0"
        out.append(f'<text x="{LEFT}" y="{y0 - 6}" {FONT} font-size="13" fill="{INK}">'
                   f'<tspan font-weight="bold">{escape(cur)}</tspan> · {days}-day gross {escape(total)} '
                   f'{escape(cur)}</text>')
        for frac in (Decimal(0), Decimal("0.5"), Decimal(1)):  # y ticks: 0, half, top
            y = y0 + PANEL_H - float(frac) * PANEL_H
            out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{GRID}"/>')
            out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" {FONT} font-size="11" fill="{MUTED}" '
                       f'text-anchor="end">{escape(amount(top_minor * frac, cur))}</text>')
        for d, v in enumerate(values):
            h = float(Decimal(v) / top_minor) * PANEL_H if top_minor else 0
            x = LEFT + d * slot + slot * 0.15
            out.append(f'<rect x="{x:.1f}" y="{y0 + PANEL_H - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                       f'fill="{BAR}"><title>{(last_day - timedelta(days=days - 1 - d)).isoformat()}: '
                       f'{escape(amount(v, cur))} {escape(cur)}</title></rect>')
        for d in range(0, days - 4, 7):  # a date every week, none crowding the last day's
            out.append(_day_label(last_day - timedelta(days=days - 1 - d), LEFT + (d + 0.5) * slot, y0 + PANEL_H))
        out.append(_day_label(last_day, LEFT + (days - 0.5) * slot, y0 + PANEL_H))
        out.append(f'<line x1="{LEFT}" y1="{y0 + PANEL_H}" x2="{WIDTH - RIGHT}" y2="{y0 + PANEL_H}" stroke="{MUTED}"/>')
    if not currencies:
        out.append(f'<text x="{LEFT}" y="{TOP + 40}" {FONT} font-size="13" fill="{MUTED}">No revenue recorded.</text>')
    out.append("</svg>")
    return "\n".join(out)


def _day_label(day: date, x: float, y: float) -> str:
    return (f'<text x="{x:.1f}" y="{y + 16:.1f}" {FONT} font-size="11" fill="{MUTED}" text-anchor="middle">'
            f'{day.strftime("%b %d")}</text>')


PNG_ZOOM = 2  # 1520 px wide: sharp on a high-density screen, ~60 KB for three currencies
# At most this many pixels (32 MB while drawn): a chart of many currencies is drawn smaller
# rather than without bound (145 panels at 2x would be 1520 x 59,828 px).
PNG_MAX_PIXELS = 8_000_000


def png_zoom(svg: str, zoom: float = PNG_ZOOM) -> float:
    """`zoom`, or less when the chart would pass PNG_MAX_PIXELS (its size from the root tag)."""
    width, height = (float(x) for x in re.search(r'<svg [^>]*width="([\d.]+)" height="([\d.]+)"', svg).groups())
    return min(zoom, (PNG_MAX_PIXELS / (width * height)) ** 0.5)


def png(svg: str, zoom: float = PNG_ZOOM) -> bytes:
    """The chart as PNG (for Slack's preview), drawn with the bundled Roboto only."""
    import font_roboto  # noqa: PLC0415 - the Slack upload only
    import resvg_py  # noqa: PLC0415

    zoom = png_zoom(svg, zoom)
    fonts = [font_roboto.font_files["Roboto"], font_roboto.font_files["RobotoBold"]]
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, skip_system_fonts=True, font_files=fonts,
                                       sans_serif_family="Roboto", zoom=zoom))
