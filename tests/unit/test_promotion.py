"""The champion/challenger promotion rule."""

from __future__ import annotations

import math

import pytest

from ragtune.core.promotion import HIGHER_IS_BETTER, Decision, decide


def test_better_than_champion_and_base_by_margin_is_promoted() -> None:
    decision = decide({"token_f1": 0.41}, {"token_f1": 0.35}, {"token_f1": 0.20}, "token_f1", 0.02)
    assert decision == Decision(
        True,
        "token_f1 0.41 beats base 0.2 by 0.21 and champion 0.35 by 0.06 "
        "(margin 0.02, higher is better)",
    )


def test_worse_than_champion_is_not_promoted() -> None:
    decision = decide({"token_f1": 0.30}, {"token_f1": 0.35}, {"token_f1": 0.20}, "token_f1")
    assert not decision.promote
    assert "does not beat champion 0.35" in decision.reason


def test_worse_than_base_is_not_promoted_even_without_champion() -> None:
    decision = decide({"token_f1": 0.10}, None, {"token_f1": 0.20}, "token_f1")
    assert not decision.promote
    assert "does not beat base 0.2" in decision.reason


@pytest.mark.parametrize("score", [0.35, 0.36, 0.3699])
def test_equal_or_within_margin_is_not_promoted(score: float) -> None:
    decision = decide({"token_f1": score}, {"token_f1": 0.35}, None, "token_f1", margin=0.02)
    assert not decision.promote
    assert "margin 0.02" in decision.reason


def test_equal_is_not_promoted_with_zero_margin() -> None:
    assert not decide({"contains": 0.5}, {"contains": 0.5}, None, "contains").promote


def test_exactly_the_margin_is_promoted_despite_float_rounding() -> None:
    assert decide({"token_f1": 0.41}, {"token_f1": 0.35}, None, "token_f1", 0.06).promote


def test_no_champion_and_no_base_is_promoted() -> None:
    decision = decide({"citation_accuracy": 0.7}, None, None, "citation_accuracy")
    assert decision.promote
    assert "no champion and no base" in decision.reason


def test_lower_is_better_metric() -> None:
    better = decide({"answer_loss": 1.2}, {"answer_loss": 1.5}, {"answer_loss": 2.0}, "answer_loss")
    worse = decide({"answer_loss": 1.6}, {"answer_loss": 1.5}, {"answer_loss": 2.0}, "answer_loss")
    assert better.promote
    assert "lower is better" in better.reason
    assert not worse.promote
    assert "does not beat champion 1.5" in worse.reason


def test_force_promotes_and_says_so() -> None:
    decision = decide({"token_f1": 0.1}, {"token_f1": 0.9}, None, "token_f1", force=True)
    assert decision.promote
    assert "forced" in decision.reason


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_non_finite_candidate_is_not_promoted(score: float) -> None:
    decision = decide({"token_f1": score}, None, None, "token_f1")
    assert not decision.promote
    assert "not a finite number" in decision.reason


def test_nan_champion_score_blocks_promotion() -> None:
    decision = decide({"token_f1": 0.5}, {"token_f1": math.nan}, None, "token_f1")
    assert not decision.promote
    assert "champion token_f1 is nan" in decision.reason


def test_missing_metric_in_candidate_is_not_promoted() -> None:
    decision = decide({"contains": 0.9}, {"token_f1": 0.3}, None, "token_f1")
    assert decision == Decision(False, "candidate has no token_f1 score")


def test_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bleu") as raised:
        decide({"bleu": 0.5}, None, None, "bleu")
    for known in HIGHER_IS_BETTER:
        assert known in str(raised.value)


def test_negative_margin_is_rejected() -> None:
    with pytest.raises(ValueError, match="margin"):
        decide({"token_f1": 0.5}, None, None, "token_f1", margin=-0.1)


def test_auto_metric_prefers_the_answer_loss_with_sources() -> None:
    from ragtune.core.promotion import pick_metric

    assert pick_metric("auto", {"answer_loss": 1.0, "rag_answer_loss": 0.8}) == "rag_answer_loss"
    assert pick_metric("auto", {"answer_loss": 1.0}) == "answer_loss"
    assert pick_metric("token_f1", {"rag_answer_loss": 0.8}) == "token_f1"
