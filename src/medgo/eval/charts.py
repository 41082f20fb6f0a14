"""Inline SVG charts for the evaluation report: no scripts, no fonts or images to fetch.

Two shapes cover the report: grouped horizontal bars with interval whiskers (candidate vs
baseline per task, per department, per bias attribute) and a forest plot of differences with
reference lines (the gate's intervals against −margin). Each chart is a ``<figure>`` with a
``data-chart`` name the report test looks for, and every mark carries a ``<title>`` so values
show on hover without JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

_LABEL_W = 190
_PLOT_W = 520
_VALUE_W = 70
_WIDTH = _LABEL_W + _PLOT_W + _VALUE_W
_TOP = 28
_AXIS_H = 26
_BAR_H = 11
_ROW_GAP = 10

SERIES_CLASS = {"candidate": "s-candidate", "baseline": "s-baseline"}


@dataclass(frozen=True)
class BarValue:
    """One bar: a series' value with an optional interval."""

    series: str
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class IntervalRow:
    """One row of a forest plot: a point estimate and its interval."""

    label: str
    value: float
    low: float
    high: float
    css: str = ""
    note: str = ""


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    ticks, tick = [], first
    while tick <= high + 1e-12:
        ticks.append(round(tick, 10))
        tick += step
    return ticks


def _x(value: float, domain: tuple[float, float]) -> float:
    low, high = domain
    clipped = min(max(value, low), high)
    return _LABEL_W + (clipped - low) / (high - low) * _PLOT_W


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _axis(domain: tuple[float, float], y: float, digits: int) -> list[str]:
    parts = [f'<line class="axis" x1="{_LABEL_W}" y1="{y:.1f}" x2="{_LABEL_W + _PLOT_W}" y2="{y:.1f}"/>']
    for tick in _nice_ticks(*domain):
        x = _x(tick, domain)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{y + 14:.1f}" text-anchor="middle">{tick:.{digits}f}</text>'
        )
    return parts


def _figure(name: str, title: str, width: float, height: float, body: Sequence[str]) -> str:
    label = escape(title)
    return (
        f'<figure class="chart" data-chart="{escape(name)}">'
        f"<figcaption>{label}</figcaption>"
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" width="100%" role="img" aria-label="{label}">'
        + "".join(body)
        + "</svg></figure>"
    )


def grouped_bar_chart(
    name: str,
    title: str,
    groups: Sequence[tuple[str, Sequence[BarValue]]],
    *,
    domain: tuple[float, float] = (0.0, 1.0),
    digits: int = 3,
) -> str:
    """Horizontal bars per group (one per series) with interval whiskers, on a shared axis."""
    body: list[str] = []
    y = _TOP
    for label, bars in groups:
        group_h = len(bars) * (_BAR_H + 3)
        body.append(
            f'<text class="label" x="{_LABEL_W - 8}" y="{y + group_h / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for bar in bars:
            css = SERIES_CLASS.get(bar.series, "s-other")
            if bar.value is not None and math.isfinite(bar.value):
                x0, x1 = _x(domain[0], domain), _x(bar.value, domain)
                tip = f"{label} · {bar.series}: {_fmt(bar.value, digits)}"
                if bar.low is not None and bar.high is not None:
                    tip += f" [{_fmt(bar.low, digits)}, {_fmt(bar.high, digits)}]"
                body.append(
                    f'<rect class="bar {css}" x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                    f'height="{_BAR_H}"><title>{escape(tip)}</title></rect>'
                )
                if bar.low is not None and bar.high is not None:
                    lo, hi, mid = _x(bar.low, domain), _x(bar.high, domain), y + _BAR_H / 2
                    body.append(
                        f'<path class="whisker" d="M{lo:.1f},{mid - 4:.1f}v8M{lo:.1f},{mid:.1f}H{hi:.1f}'
                        f'M{hi:.1f},{mid - 4:.1f}v8"/>'
                    )
                body.append(
                    f'<text class="value" x="{_LABEL_W + _PLOT_W + 6}" y="{y + _BAR_H - 1:.1f}">'
                    f"{_fmt(bar.value, digits)}</text>"
                )
            y += _BAR_H + 3
        y += _ROW_GAP
    body += _axis(domain, y, 2 if domain[1] - domain[0] <= 2 else 1)
    return _figure(name, title, _WIDTH, y + _AXIS_H, body)


def interval_chart(
    name: str,
    title: str,
    rows: Sequence[IntervalRow],
    *,
    lines: Sequence[tuple[float, str, str]] = (),
    digits: int = 3,
) -> str:
    """A forest plot: each row's point and interval, with labelled vertical reference ``lines``."""
    values = [v for r in rows for v in (r.low, r.high, r.value) if math.isfinite(v)]
    values += [value for value, _, _ in lines]
    low, high = (min(values), max(values)) if values else (-1.0, 1.0)
    pad = max((high - low) * 0.08, 0.01)
    domain = (low - pad, high + pad)
    body: list[str] = []
    row_h = _BAR_H + _ROW_GAP
    bottom = _TOP + row_h * len(rows)
    for value, label, css in lines:
        x = _x(value, domain)
        body.append(
            f'<line class="ref {escape(css)}" x1="{x:.1f}" y1="{_TOP - 10}" x2="{x:.1f}" y2="{bottom:.1f}"/>'
        )
        body.append(
            f'<text class="ref-label {escape(css)}" x="{x + 3:.1f}" y="{_TOP - 12}">{escape(label)}</text>'
        )
    for index, row in enumerate(rows):
        mid = _TOP + index * row_h + _BAR_H / 2
        lo, hi, x = _x(row.low, domain), _x(row.high, domain), _x(row.value, domain)
        tip = f"{row.label}: {_fmt(row.value, digits)} [{_fmt(row.low, digits)}, {_fmt(row.high, digits)}]"
        if row.note:
            tip += f" · {row.note}"
        body.append(
            f'<text class="label" x="{_LABEL_W - 8}" y="{mid + 4:.1f}" text-anchor="end">{escape(row.label)}</text>'
        )
        body.append(
            f'<g class="interval {escape(row.css)}"><title>{escape(tip)}</title>'
            f'<line class="whisker" x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" y2="{mid:.1f}"/>'
            f'<circle class="point" cx="{x:.1f}" cy="{mid:.1f}" r="4"/></g>'
        )
        body.append(
            f'<text class="value" x="{_LABEL_W + _PLOT_W + 6}" y="{mid + 4:.1f}">{_fmt(row.value, digits)}</text>'
        )
    body += _axis(domain, bottom, digits if domain[1] - domain[0] < 0.5 else 2)
    return _figure(name, title, _WIDTH, bottom + _AXIS_H, body)
