"""Charts drawn on the server as inline SVG: horizontal bars, stacked hourly columns, a timeline.

Pure functions from figures to markup, no script and no library. Colours come from the
stylesheet through class names (`fill-completed`, `fill-failed`...), so a chart follows the
page's palette; every chart has a `<title>` and an `aria-label` that say what it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Bar", "Column", "Segment", "bar_chart", "column_chart", "timeline_bar"]

WIDTH = 560
LABEL_WIDTH = 130
VALUE_WIDTH = 80
ROW_HEIGHT = 26


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    tone: str = "neutral"  # a class suffix: fill-<tone>


@dataclass(frozen=True, slots=True)
class Column:
    label: str  # shown under some columns only (every `label_every`)
    parts: Sequence[tuple[str, int]]  # (tone, count), stacked bottom up


@dataclass(frozen=True, slots=True)
class Segment:
    label: str
    seconds: float
    tone: str


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.2f}"


def _svg(width: int, height: int, label: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(label)}</title>{body}</svg>"
    )


def bar_chart(bars: Sequence[Bar], *, label: str, show: Callable[[float], str] = _number) -> Markup:
    """One horizontal bar per row, scaled to the largest value, with its value at the end."""
    height = max(1, len(bars)) * ROW_HEIGHT + 4
    largest = max((bar.value for bar in bars), default=0.0) or 1.0
    room = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    parts = []
    for row, bar in enumerate(bars):
        y = row * ROW_HEIGHT + 4
        length = 0.0 if bar.value <= 0 else max(2.0, room * bar.value / largest)
        parts.append(
            f'<text class="chart-label" x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
            f'<rect class="fill-{escape(bar.tone)}" x="{LABEL_WIDTH}" y="{y + 2}" '
            f'width="{length:.1f}" height="{ROW_HEIGHT - 8}" rx="3"/>'
            f'<text class="chart-value" x="{LABEL_WIDTH + length + 6:.1f}" y="{y + 15}">'
            f"{escape(show(bar.value))}</text>"
        )
    if not bars:
        parts.append(f'<text class="chart-label" x="8" y="18">{escape("nothing yet")}</text>')
    return _svg(WIDTH, height, label, "".join(parts))


def column_chart(
    columns: Sequence[Column],
    *,
    label: str,
    label_every: int = 6,
    height: int = 160,
    unit: str | None = None,
) -> Markup:
    """Stacked columns (one per hour, say) on a shared scale, with the largest total marked.
    Each part's tooltip counts it in `unit`, or names its tone."""
    plot_top, plot_bottom, left = 16, height - 22, 36
    plot_height = plot_bottom - plot_top
    count = max(1, len(columns))
    step = (WIDTH - left - 4) / count
    largest = max((sum(n for _, n in column.parts) for column in columns), default=0) or 1
    parts = [
        f'<line class="chart-axis" x1="{left}" y1="{plot_bottom}" x2="{WIDTH - 4}" '
        f'y2="{plot_bottom}"/>',
        f'<text class="chart-label" x="{left - 6}" y="{plot_top + 4}" text-anchor="end">'
        f"{largest}</text>",
        f'<text class="chart-label" x="{left - 6}" y="{plot_bottom}" text-anchor="end">0</text>',
    ]
    for index, column in enumerate(columns):
        x = left + index * step + 1
        y = float(plot_bottom)
        for tone, n in column.parts:
            if n <= 0:
                continue
            h = plot_height * n / largest
            y -= h
            parts.append(
                f'<rect class="fill-{escape(tone)}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{max(1.0, step - 2):.1f}" height="{h:.1f}">'
                f"<title>{escape(column.label)}: {n} {escape(unit or tone)}</title></rect>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text class="chart-label" x="{x + step / 2 - 1:.1f}" y="{height - 6}" '
                f'text-anchor="middle">{escape(column.label)}</text>'
            )
    return _svg(WIDTH, height, label, "".join(parts))


def timeline_bar(segments: Sequence[Segment], *, label: str) -> Markup:
    """One bar split into the time spent in each state, in order; each part names its state."""
    height = 34
    total = sum(max(0.0, s.seconds) for s in segments) or 1.0
    x = 0.0
    parts = []
    for segment in segments:
        width = WIDTH * max(0.0, segment.seconds) / total
        parts.append(
            f'<rect class="fill-{escape(segment.tone)}" x="{x:.1f}" y="4" '
            f'width="{max(width, 1.5):.1f}" height="26">'
            f"<title>{escape(segment.label)}</title></rect>"
        )
        x += width
    return _svg(WIDTH, height, label, "".join(parts))
