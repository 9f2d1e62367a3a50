"""The staff latency dashboard: each app's stored latencies, as percentiles and charts.

The core knows no app's models: an app registers a *source*, a function that
returns its latency samples since a time (chat: time to first token and
tokens/s; rooms: the AI's time to first token; voice: voice-to-voice). The
page shows, per series, the count and p50/p95/p99 over the window and a chart
of p50 and p95 per time bucket, drawn server-side as SVG (no script, so the
strict CSP holds). Prometheus (`/metrics`) has the live histograms; this page
reads what was stored, so it covers every process and survives restarts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "24h"
BUCKETS = 24
# The most samples a source reads per series (the newest).
MAX_SAMPLES = 20_000
CHART_WIDTH, CHART_HEIGHT = 480, 120


@dataclass
class Samples:
    """One series' samples: (when, value), any order."""

    title: str
    unit: str  # "ms" or "tok/s"
    points: list[tuple[datetime, float]]


Source = Callable[[datetime], Iterable[Samples]]
_sources: list[tuple[str, Source]] = []


def register(name: str, source: Source) -> None:
    """Add an app's series to the dashboard (once per name)."""
    if all(existing != name for existing, _ in _sources):
        _sources.append((name, source))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) of sorted `values`, by linear interpolation."""
    if not values:
        return None
    rank = (len(values) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass
class Series:
    title: str
    unit: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    chart: dict = field(default_factory=dict)


def summarize(samples: Samples, *, since: datetime, until: datetime) -> Series:
    values = sorted(value for _, value in samples.points)
    return Series(
        title=samples.title,
        unit=samples.unit,
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        chart=chart(samples.points, since=since, until=until),
    )


def chart(points: list[tuple[datetime, float]], *, since: datetime, until: datetime) -> dict:
    """SVG polylines of p50 and p95 per bucket of the window; empty buckets are gaps."""
    span = (until - since).total_seconds() or 1.0
    buckets: list[list[float]] = [[] for _ in range(BUCKETS)]
    for when, value in points:
        index = int((when - since).total_seconds() / span * BUCKETS)
        buckets[min(max(index, 0), BUCKETS - 1)].append(value)
    p50s = [percentile(sorted(b), 50) for b in buckets]
    p95s = [percentile(sorted(b), 95) for b in buckets]
    top = max((v for v in p95s if v is not None), default=0.0) or 1.0

    def position(index: int, value: float) -> tuple[float, float]:
        x = (index + 0.5) * CHART_WIDTH / BUCKETS
        return round(x, 1), round(CHART_HEIGHT - value / top * (CHART_HEIGHT - 8), 1)

    def segments(values: list[float | None]) -> list[str]:
        lines, current = [], []
        for index, value in enumerate(values):
            if value is None:
                if current:
                    lines.append(" ".join(current))
                current = []
                continue
            x, y = position(index, value)
            current.append(f"{x},{y}")
        if current:
            lines.append(" ".join(current))
        return lines

    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "top": top,
        "p50": segments(p50s),
        "p95": segments(p95s),
        # A bucket alone between gaps is a point, not a line: dots show every p50.
        "dots": [position(i, v) for i, v in enumerate(p50s) if v is not None],
    }


def sections(*, since: datetime, until: datetime) -> list[tuple[str, list[Series]]]:
    """Every registered source's series over [since, until]."""
    return [
        (name, [summarize(s, since=since, until=until) for s in source(since)])
        for name, source in _sources
    ]


def stored_series(
    queryset, *, time_field: str, fields: Sequence[tuple[str, str, str]], since: datetime
) -> list[Samples]:
    """Samples of `fields` ((field, title, unit), ...) of the rows of `queryset` since `since`.

    The apps' sources are this call on their own models: the newest MAX_SAMPLES rows.
    """
    rows = list(
        queryset.filter(**{f"{time_field}__gte": since})
        .order_by(f"-{time_field}")
        .values_list(time_field, *(name for name, _, _ in fields))[:MAX_SAMPLES]
    )
    return [
        Samples(
            title=title,
            unit=unit,
            points=[(row[0], row[i + 1]) for row in rows if row[i + 1] is not None],
        )
        for i, (_, title, unit) in enumerate(fields)
    ]
