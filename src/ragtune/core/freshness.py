"""Freshness figures: lag = indexed_at - changed_at, summarised as percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def lag_summary(lags_s: Sequence[float]) -> dict[str, float | None]:
    p50, p95 = percentile(lags_s, 50), percentile(lags_s, 95)
    return {
        "lag_p50_s": None if p50 is None else round(p50, 3),
        "lag_p95_s": None if p95 is None else round(p95, 3),
    }
