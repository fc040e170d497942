"""Server-rendered SVG charts: no chart library, nothing from a CDN, readable without script."""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from apps.scans.agreement import VersionAgreement

WIDTH = 760
LEFT, RIGHT, BOTTOM = 52, 64, 46
# Distinguishable in print and for the common colour-vision deficiencies (Okabe-Ito).
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def agreement_chart_svg(versions: list[VersionAgreement]) -> SafeString:
    """Agreement (share of readings agreeing with the model) per month, one line per model
    version, each point titled with its counts. Empty string when nothing was reviewed."""
    months = sorted({month for version in versions for month in version.months})
    if not months:
        return SafeString("")
    top = 26 + 16 * len(versions)  # the legend, one line per version, above the plot
    height = top + 200 + BOTTOM
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - top - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w / 2 if len(months) == 1 else plot_w * index / (len(months) - 1))

    def y(rate: float) -> float:
        return top + plot_h * (1 - rate)

    parts = [
        format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" role="img" class="chart" '
            'aria-labelledby="agreement-chart-title">',
            WIDTH,
            height,
        ),
        mark_safe('<title id="agreement-chart-title">Agreement with the radiologists\' readings per month</title>'),
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d9dfe7"/>'
                '<text x="{}" y="{}" text-anchor="end" font-size="11" fill="#5b6778">{}%</text>',
                LEFT, WIDTH - RIGHT, y(tick), y(tick), LEFT - 6, y(tick) + 4, int(tick * 100),
            )
        )
    for index, month in enumerate(months):
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#5b6778">{}</text>',
                x(index), height - BOTTOM + 16, month,
            )
        )
    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="middle" font-size="11" fill="#5b6778">{}</text>',
            LEFT + plot_w / 2, height - 8, "month of the model's result",
        )
    )
    for number, version in enumerate(versions):
        colour = COLOURS[number % len(COLOURS)]
        points = [
            (x(months.index(m.month)), y(m.overall.rate), m)
            for m in version.month_list()
            if m.overall.rate is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
            parts.append(format_html('<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>', path, colour))
        for px, py, month in points:
            parts.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="4" fill="{}"><title>{} · {}: {} of {} agree ({}%)</title>'
                    "</circle>"
                    '<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="{}">{}% (n={})</text>',
                    f"{px:.1f}", f"{py:.1f}", colour, version.model_version, month.month, month.overall.agreed,
                    month.overall.reviewed, f"{month.overall.rate * 100:.1f}", f"{px:.1f}", f"{py - 8:.1f}", colour,
                    f"{month.overall.rate * 100:.0f}", month.overall.reviewed,
                )
            )
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11" fill="#1c2430">{}</text>',
                LEFT, 6 + 16 * number, colour, LEFT + 14, 15 + 16 * number,
                version.model_version,
            )
        )
    parts.append(mark_safe("</svg>"))
    return SafeString("".join(parts))
