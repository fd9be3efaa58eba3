"""The champion/challenger promotion rule, on inline per-question scores.

Each case's truth is plain from its data: a candidate better by 0.3 on every question, one
that is ahead by 0.01 on average with questions going both ways, identical scores, and so
on. The intervals come from `core.bootstrap`, tested on its own.
"""

from __future__ import annotations

import math

import pytest

from ragtune.core.promotion import HIGHER_IS_BETTER, Decision, decide, pick_metric

BASE = [0.20, 0.10, 0.30, 0.25, 0.15, 0.20, 0.35, 0.05, 0.10, 0.30]
CHAMPION = [0.40, 0.35, 0.45, 0.30, 0.50, 0.40, 0.35, 0.45, 0.30, 0.50]
BETTER = [v + 0.30 for v in CHAMPION]  # 0.3 better on every question
# ahead of the champion by 0.01 on average, but worse on half the questions
NOISY = [v + d for v, d in zip(CHAMPION, [0.2, -0.18] * 5, strict=True)]


def f1(values: list[float]) -> dict[str, list[float | None]]:
    return {"token_f1": list(values)}


def loss(values: list[float]) -> dict[str, list[float | None]]:
    return {"answer_loss": list(values)}


def test_better_on_every_question_than_champion_and_base_is_promoted() -> None:
    decision = decide(f1(BETTER), f1(CHAMPION), f1(BASE), "token_f1", margin=0.05)
    assert decision.promote, decision.reason
    assert decision.reason.startswith("token_f1 (higher is better) improves on champion by 0.3 ")
    assert "95% CI [0.3, 0.3], better on 10 of 10 questions" in decision.reason
    assert " and on base by " in decision.reason
    assert decision.reason.endswith("each lower bound > margin 0.05")
    against = {c["against"]: c for c in decision.evidence_json()}
    assert set(against) == {"champion", "base"}
    assert against["champion"]["wins"] == 10 and against["champion"]["losses"] == 0


def test_ahead_on_average_but_inside_the_noise_is_not_promoted() -> None:
    assert sum(NOISY) / len(NOISY) > sum(CHAMPION) / len(CHAMPION)  # the mean is ahead
    decision = decide(f1(NOISY), f1(CHAMPION), None, "token_f1")
    assert not decision.promote
    assert decision.reason.startswith(
        "token_f1 (higher is better) does not improve on champion by more than margin 0: "
        "improvement 0.01 (95% CI ["
    )
    [evidence] = decision.evidence_json()
    low, high = evidence["ci95"]
    assert low < 0 < high
    assert (evidence["wins"], evidence["losses"]) == (5, 5)


def test_identical_scores_are_not_promoted() -> None:
    decision = decide(f1(CHAMPION), f1(CHAMPION), None, "token_f1")
    assert not decision.promote
    assert "improvement 0 (95% CI [0, 0], better on 0 of 10 questions)" in decision.reason


def test_a_margin_above_the_lower_bound_keeps_a_winner_challenger() -> None:
    """0.3 better on every question: the interval is [0.3, 0.3]; and an uneven winner."""
    assert decide(f1(BETTER), f1(CHAMPION), None, "token_f1", margin=0.29).promote
    held = decide(f1(BETTER), f1(CHAMPION), None, "token_f1", margin=0.31)
    assert not held.promote and "by more than margin 0.31" in held.reason
    # gains of 0.1 to 0.5: mean 0.3, so a margin of 0.25 is below the mean but above the
    # interval's lower bound, which the decision reads (printed in the reason)
    uneven = [v + g for v, g in zip(CHAMPION, [0.1, 0.5] * 5, strict=True)]
    at_mean = decide(f1(uneven), f1(CHAMPION), None, "token_f1", margin=0.25)
    [evidence] = at_mean.evidence_json()
    assert evidence["improvement"] == pytest.approx(0.3)
    low = evidence["ci95"][0]
    assert 0 < low < 0.25
    assert not at_mean.promote
    assert decide(f1(uneven), f1(CHAMPION), None, "token_f1", margin=low - 0.01).promote


def test_better_than_champion_but_not_base_is_not_promoted() -> None:
    weak_champion = [v - 0.2 for v in BASE]
    decision = decide(f1(BASE), f1(weak_champion), f1(BASE), "token_f1")
    assert not decision.promote
    assert "does not improve on base" in decision.reason
    assert [c["against"] for c in decision.evidence_json()] == ["champion", "base"]


def test_for_a_loss_improvement_is_the_reference_minus_the_candidate() -> None:
    high, low = [2.0 + v for v in BASE], [1.0 + v for v in BASE]
    better = decide(loss(low), loss(high), None, "answer_loss")
    assert better.promote
    assert better.reason.startswith("answer_loss (lower is better) improves on champion by 1 ")
    worse = decide(loss(high), loss(low), None, "answer_loss")
    assert not worse.promote
    assert "improvement -1 (95% CI [-1, -1], better on 0 of 10 questions)" in worse.reason


def test_the_same_seed_gives_the_same_interval() -> None:
    first = decide(f1(NOISY), f1(CHAMPION), None, "token_f1", seed=7)
    again = decide(f1(NOISY), f1(CHAMPION), None, "token_f1", seed=7)
    assert first.evidence_json() == again.evidence_json()
    assert first.reason == again.reason


def test_questions_without_a_score_are_left_out_of_the_pair() -> None:
    candidate: dict[str, list[float | None]] = {"answer_loss": [1.0, None, 1.1, 0.9]}
    base: dict[str, list[float | None]] = {"answer_loss": [2.0, None, 2.1, 1.9]}
    decision = decide(candidate, None, base, "answer_loss")
    assert decision.promote
    assert "better on 3 of 3 questions" in decision.reason


def test_no_champion_and_no_base_is_promoted() -> None:
    decision = decide({"citation_accuracy": [0.7, 0.9]}, None, None, "citation_accuracy")
    assert decision.promote
    assert decision.reason == "citation_accuracy 0.8 with no champion and no base to beat"


def test_force_promotes_and_says_so() -> None:
    decision = decide(f1([0.1, 0.1]), f1([0.9, 0.9]), None, "token_f1", force=True)
    assert decision == Decision(True, "forced promotion (candidate token_f1 0.1)")


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_non_finite_candidate_is_not_promoted(score: float) -> None:
    decision = decide(f1([0.5, score]), None, None, "token_f1")
    assert not decision.promote
    assert "not a finite number" in decision.reason


def test_nan_champion_score_blocks_promotion() -> None:
    decision = decide(f1([0.5, 0.6]), f1([0.1, math.nan]), None, "token_f1")
    assert not decision.promote
    assert decision.reason.startswith("champion token_f1 has a score that is not a finite")


def test_different_questions_cannot_be_compared() -> None:
    decision = decide(f1([0.5, 0.6, 0.7]), f1([0.1, 0.2]), None, "token_f1")
    assert not decision.promote
    assert "champion token_f1 scored 2 questions, the candidate 3" in decision.reason


def test_missing_per_question_scores_are_not_promoted() -> None:
    assert decide({"contains": [1.0]}, None, None, "token_f1") == Decision(
        False, "candidate has no per-question token_f1 scores: re-evaluate it or force"
    )
    # a base report from before per-question scores
    decision = decide(f1([0.5]), None, {}, "token_f1")
    assert not decision.promote
    assert decision.reason.startswith("base token_f1 has no per-question scores")


def test_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bleu") as raised:
        decide({"bleu": [0.5]}, None, None, "bleu")
    for known in HIGHER_IS_BETTER:
        assert known in str(raised.value)


def test_negative_margin_is_rejected() -> None:
    with pytest.raises(ValueError, match="margin"):
        decide(f1([0.5]), None, None, "token_f1", margin=-0.1)


def test_auto_metric_prefers_the_answer_loss_with_sources() -> None:
    assert pick_metric("auto", {"answer_loss": 1.0, "rag_answer_loss": 0.8}) == "rag_answer_loss"
    assert pick_metric("auto", {"answer_loss": 1.0}) == "answer_loss"
    assert pick_metric("token_f1", {"rag_answer_loss": 0.8}) == "token_f1"
