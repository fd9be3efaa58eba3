"""Paired bootstrap intervals and the verdict they support.

Every configuration answers the same questions, so the comparison is paired: one set of
resampled question indices (fixed seed) serves every configuration's mean and every
pair's difference. A configuration is declared best only when the 95% interval of its
difference over *each* other configuration lies above zero; otherwise the verdict names
the closest pair it could not separate.

    intervals, comparisons, verdict = decide({"rag": [...], "base": [...]}, "token_f1")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
TIE = 1e-9  # per-question differences this small are ties


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def to_json(self) -> dict[str, object]:
        return {"mean": self.mean, "ci95": [self.low, self.high]}


@dataclass(frozen=True)
class Comparison:
    """a minus b, per question, with its interval; wins are questions where a scored more."""

    a: str
    b: str
    metric: str
    difference: Interval
    wins: int
    ties: int
    losses: int

    def to_json(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "metric": self.metric,
            "difference": self.difference.mean,
            "ci95": [self.difference.low, self.difference.high],
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
        }


@dataclass(frozen=True)
class Verdict:
    best: str | None
    metric: str
    statement: str

    def to_json(self) -> dict[str, object]:
        return {"best": self.best, "metric": self.metric, "statement": self.statement}


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """`resamples` rows of n question indices drawn with replacement."""
    if n <= 0:
        raise ValueError("a bootstrap needs at least one question")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def interval(values: Sequence[float] | np.ndarray, indices: np.ndarray) -> Interval:
    """The mean of `values` and its percentile interval over the resampled indices."""
    array = np.asarray(values, dtype=np.float64)
    means = array[indices].mean(axis=1)
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(array.mean()), float(low), float(high))


def compare(
    a: str,
    a_values: Sequence[float],
    b: str,
    b_values: Sequence[float],
    metric: str,
    indices: np.ndarray,
) -> Comparison:
    """The paired difference a - b, its interval, and wins/ties/losses per question."""
    if len(a_values) != len(b_values):
        raise ValueError(f"{a} and {b} must score the same questions")
    differences = np.asarray(a_values, dtype=np.float64) - np.asarray(b_values, dtype=np.float64)
    return Comparison(
        a,
        b,
        metric,
        interval(differences, indices),
        wins=int((differences > TIE).sum()),
        ties=int((np.abs(differences) <= TIE).sum()),
        losses=int((differences < -TIE).sum()),
    )


def decide(
    scores: Mapping[str, Sequence[float]],
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, Interval], list[Comparison], Verdict]:
    """Intervals per configuration, every pair's comparison, and the verdict on `metric`."""
    names = list(scores)
    if not names:
        raise ValueError("no configurations to compare")
    sizes = {len(v) for v in scores.values()}
    if len(sizes) != 1:
        raise ValueError("every configuration must score the same questions")
    indices = resample_indices(sizes.pop(), resamples, seed)
    intervals = {name: interval(scores[name], indices) for name in names}
    ranked = sorted(names, key=lambda n: -intervals[n].mean)
    comparisons = [
        compare(a, scores[a], b, scores[b], metric, indices) for a, b in combinations(ranked, 2)
    ]
    return intervals, comparisons, verdict(ranked, comparisons, metric)


def verdict(ranked: Sequence[str], comparisons: Sequence[Comparison], metric: str) -> Verdict:
    """The top configuration is best only if its interval over each other one is above 0."""
    top = ranked[0]
    if len(ranked) == 1:
        return Verdict(top, metric, f"{top} is the only configuration measured on {metric}")
    against = {c.b: c for c in comparisons if c.a == top}
    for other in ranked[1:]:
        gap = against[other].difference
        if gap.low <= 0.0:
            return Verdict(
                None,
                metric,
                f"no significant difference between {top} and {other} on {metric} "
                f"(difference {gap.mean:+.3f}, 95% CI [{gap.low:+.3f}, {gap.high:+.3f}])",
            )
    runner = against[ranked[1]].difference
    return Verdict(
        top,
        metric,
        f"{top} is best on {metric}: {runner.mean:+.3f} over {ranked[1]} "
        f"(95% CI [{runner.low:+.3f}, {runner.high:+.3f}]), and ahead of every other",
    )
