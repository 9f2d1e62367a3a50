"""Pure statistics of the benchmarks: percentiles, rounding, ratios, memory growth."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def pcts(values: Iterable[float], qs: Sequence[int] = (50, 95, 99)) -> dict[str, float | None]:
    """{"p50": ..., "p95": ..., "p99": ...}, rounded to 0.01."""
    values = list(values)
    return {f"p{q}": rnd(percentile(values, q)) for q in qs}


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def ms(seconds: float) -> float:
    return seconds * 1000


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """ours / baseline to 0.001; None when either is missing or the baseline is not positive."""
    if ours is None or baseline is None or baseline <= 0:
        return None
    return round(ours / baseline, 3)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio as the table prints it: "1.27x", or "-" when there is none."""
    return "-" if value is None else f"{value:.2f}x"


def slope_per_thousand(points: Sequence[tuple[int, float]]) -> float | None:
    """Least-squares slope of (count, value) points, per 1,000 counts.

    A leak shows as a steady slope; allocator warm-up as a step that flattens.
    """
    if len(points) < 2:
        return None
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return 1000 * covariance / spread
