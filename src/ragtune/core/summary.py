"""The evaluation's numbers from per-question scores: intervals, comparisons, verdict.

`scores[configuration]` holds one mapping per question, metric -> score, with None where
the metric does not apply: `citation_accuracy` on a question without a gold document or
in a configuration without sources, `groundedness` without sources, `abstention_rate` on
an answerable question. A metric is summarised over the configurations that measure it,
on the questions each of them has a score for, so every interval and difference stays
paired (`core.bootstrap`, one fixed seed). A metric no question measures gets
`{"mean": None, "ci95": None}`.

    configurations, comparisons, verdict = summarise(scores, range(n), "token_f1")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ragtune.core.bootstrap import RESAMPLES, Interval, Verdict, decide, interval, resample_indices

QUALITY = ("token_f1", "contains", "citation_accuracy", "groundedness", "abstention_rate")
COST = ("prompt_tokens",)
PER_QUESTION = QUALITY + COST
DIGITS = 4

QuestionScores = Mapping[str, float | None]
Scores = Mapping[str, Sequence[QuestionScores]]
Summary = dict[str, Any]  # metric -> {"mean", "ci95"}, plus "questions"


def measured(scores: Scores, metric: str, questions: Sequence[int]) -> dict[str, list[float]]:
    """The configurations that measure `metric` on any of `questions`, each with its scores
    on the questions all of them measure (the same questions, in the same order)."""
    names = [n for n in scores if any(scores[n][i].get(metric) is not None for i in questions)]
    kept = [i for i in questions if all(scores[n][i].get(metric) is not None for n in names)]
    return {n: [float(scores[n][i][metric] or 0.0) for i in kept] for n in names}


def as_json(found: Interval | None) -> dict[str, Any]:
    if found is None:
        return {"mean": None, "ci95": None}
    return {
        "mean": round(found.mean, DIGITS),
        "ci95": [round(found.low, DIGITS), round(found.high, DIGITS)],
    }


def summarise(
    scores: Scores,
    questions: Sequence[int],
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, Summary], list[dict[str, Any]], Verdict]:
    """Per configuration and metric the mean and its 95% interval, every pair's paired
    difference per metric, and the verdict on `metric` — over `questions` (indices)."""
    summaries: dict[str, Summary] = {n: {"questions": len(questions)} for n in scores}
    comparisons: list[dict[str, Any]] = []
    chosen = Verdict(None, metric, f"no question measures {metric}")
    for name in PER_QUESTION:
        values = measured(scores, name, questions)
        found: dict[str, Interval] = {}
        if values and len(next(iter(values.values()))) > 0:
            found, pairs, verdict = decide(values, name, resamples, seed)
            comparisons += [_comparison(c.to_json()) for c in pairs]
            if name == metric:
                chosen = verdict
        for config in scores:
            summaries[config][name] = as_json(found.get(config))
    return summaries, comparisons, chosen


def by_group(
    scores: Scores,
    groups: Mapping[str, Sequence[int]],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, Summary]]:
    """For each group of questions (a category), each configuration's metrics on them."""
    report: dict[str, dict[str, Summary]] = {}
    for group, questions in groups.items():
        report[group] = {n: {"questions": len(questions)} for n in scores}
        for name in PER_QUESTION:
            values = measured(scores, name, questions)
            size = len(next(iter(values.values()))) if values else 0
            indices = resample_indices(size, resamples, seed) if size else None
            for config in scores:
                kept = values.get(config)
                found = interval(kept, indices) if kept and indices is not None else None
                report[group][config][name] = as_json(found)
    return report


def _comparison(found: dict[str, Any]) -> dict[str, Any]:
    found["difference"] = round(float(found["difference"]), DIGITS)
    found["ci95"] = [round(float(v), DIGITS) for v in found["ci95"]]
    return found
