"""The evaluation summary: metrics that apply to some questions or configurations only."""

from __future__ import annotations

from ragtune.core.summary import PER_QUESTION, by_group, summarise


def question(f1: float, cited: float | None, abstained: float | None) -> dict[str, float | None]:
    return {
        "token_f1": f1,
        "contains": f1,
        "citation_accuracy": cited,
        "groundedness": None if cited is None else 1.0,
        "abstention_rate": abstained,
        "prompt_tokens": 10.0,
    }


# six questions; the last two are unanswerable; only the `rag` configuration has sources
SCORES = {
    "rag": [question(0.9, 1.0, None)] * 2
    + [question(0.8, None, None)] * 2
    + [question(1.0, None, 1.0), question(1.0, None, 0.0)],
    "base": [question(0.1, None, None)] * 4 + [question(0.0, None, 0.0)] * 2,
}


def test_each_metric_is_summarised_where_it_applies() -> None:
    configurations, comparisons, verdict = summarise(SCORES, range(6), "token_f1", 500, seed=3)
    rag, base = configurations["rag"], configurations["base"]
    assert rag["questions"] == base["questions"] == 6
    assert set(PER_QUESTION) <= set(rag)
    assert rag["token_f1"]["mean"] == round((0.9 * 2 + 0.8 * 2 + 2) / 6, 4)
    assert rag["citation_accuracy"]["mean"] == 1.0  # the two questions with a gold document
    assert base["citation_accuracy"] == {"mean": None, "ci95": None}  # no sources
    assert base["groundedness"] == {"mean": None, "ci95": None}
    assert rag["abstention_rate"]["mean"] == 0.5 and base["abstention_rate"]["mean"] == 0.0
    low, high = rag["token_f1"]["ci95"]
    assert low <= rag["token_f1"]["mean"] <= high
    # pairs only where both measure the metric
    pairs = {(c["a"], c["b"], c["metric"]) for c in comparisons}
    assert ("rag", "base", "token_f1") in pairs and ("rag", "base", "abstention_rate") in pairs
    assert not any(c["metric"] == "citation_accuracy" for c in comparisons)
    f1 = next(c for c in comparisons if c["metric"] == "token_f1")
    assert (f1["wins"], f1["ties"], f1["losses"]) == (6, 0, 0)
    assert verdict.best == "rag" and verdict.metric == "token_f1"


def test_a_verdict_metric_no_question_measures_says_so() -> None:
    _, _, verdict = summarise(SCORES, range(4), "abstention_rate", 200)
    assert verdict.best is None and "no question measures abstention_rate" in verdict.statement


def test_groups_are_summarised_on_their_own_questions() -> None:
    groups = by_group(SCORES, {"unanswerable": [4, 5], "empty": []}, 200, seed=1)
    assert groups["unanswerable"]["rag"]["token_f1"]["mean"] == 1.0
    assert groups["unanswerable"]["rag"]["abstention_rate"]["mean"] == 0.5
    assert groups["unanswerable"]["base"]["questions"] == 2
    assert groups["empty"]["rag"] == {"questions": 0} | {
        m: {"mean": None, "ci95": None} for m in PER_QUESTION
    }
