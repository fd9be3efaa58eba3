"""Paired bootstrap intervals and the verdict, on inline data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragtune.core.bootstrap import decide, interval, resample_indices

SEED = 1234  # the data of these tests; the bootstrap has its own fixed seed


def test_a_clearly_better_configuration_is_declared_best() -> None:
    rng = np.random.default_rng(SEED)
    base = rng.uniform(0.0, 0.5, size=120)
    better = base + 0.3  # better on every question
    intervals, comparisons, verdict = decide({"base": list(base), "rag": list(better)}, "token_f1")
    assert verdict.best == "rag"
    assert verdict.statement.startswith("rag is best on token_f1: +0.300")
    (pair,) = comparisons
    assert (pair.a, pair.b, pair.wins, pair.ties, pair.losses) == ("rag", "base", 120, 0, 0)
    assert pair.difference.low == pytest.approx(0.3) and pair.difference.high == pytest.approx(0.3)
    assert intervals["rag"].mean == pytest.approx(float(base.mean()) + 0.3)


def test_identical_configurations_are_not_separated() -> None:
    values = list(np.random.default_rng(SEED).uniform(size=50))
    _, comparisons, verdict = decide({"a": values, "b": list(values)}, "token_f1")
    assert verdict.best is None
    assert verdict.statement.startswith("no significant difference between")
    assert comparisons[0].ties == 50 and comparisons[0].difference.mean == 0.0


def test_the_best_must_beat_each_other_configuration() -> None:
    rng = np.random.default_rng(SEED)
    base = rng.uniform(0.0, 0.3, size=80)
    close = base + rng.normal(0.0, 0.2, size=80)  # noisy, near the best on average
    best = base + 0.05
    _, _, verdict = decide({"base": list(base), "close": list(close), "best": list(best)}, "m")
    assert verdict.best is None
    assert "between" in verdict.statement and "close" in verdict.statement


def test_the_interval_matches_the_normal_approximation_on_a_large_sample() -> None:
    values = np.random.default_rng(SEED).normal(0.5, 0.2, size=2000)
    got = interval(values, resample_indices(len(values), 4000, seed=7))
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))  # independent of the bootstrap
    assert got.low == pytest.approx(values.mean() - half, abs=0.002)
    assert got.high == pytest.approx(values.mean() + half, abs=0.002)


def test_the_seed_makes_it_repeatable() -> None:
    rng = np.random.default_rng(SEED)
    values = {"a": list(rng.uniform(size=40)), "b": list(rng.uniform(size=40))}
    first = decide(values, "m", seed=3)
    assert decide(values, "m", seed=3) == first
    assert decide(values, "m", seed=4)[0] != first[0]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="same questions"):
        decide({"a": [1.0], "b": [1.0, 0.0]}, "m")
    with pytest.raises(ValueError, match="at least one question"):
        decide({"a": []}, "m")
