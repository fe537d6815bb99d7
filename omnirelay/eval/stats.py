"""Percentile bootstrap confidence intervals (seeded, so a results table is reproducible)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from msgspec import Struct

BOOTSTRAP_SAMPLES = 2000


class Estimate(Struct, frozen=True):
    mean: float
    low: float
    high: float

    def show(self, digits: int = 2) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Estimate:
    """The mean of ``values`` with a percentile bootstrap interval at ``level`` (resampling items with
    replacement ``samples`` times). An empty sample gives NaNs; a single item gives a zero-width interval."""
    n = len(values)
    if n == 0:
        nan = float("nan")
        return Estimate(mean=nan, low=nan, high=nan)
    mean = sum(values) / n
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1.0 - level) / 2.0
    return Estimate(mean=mean, low=_percentile(means, tail), high=_percentile(means, 1.0 - tail))


def paired_difference_ci(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Estimate:
    """Mean of ``a - b`` over paired items (same problem, two systems) with its bootstrap interval: resampling
    pairs keeps the per-item correlation, so the interval is tighter than comparing two separate intervals."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    return bootstrap_ci([x - y for x, y in zip(a, b, strict=True)], level, samples, seed)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")
