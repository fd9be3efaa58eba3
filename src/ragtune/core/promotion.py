"""Champion/challenger promotion rule: does a freshly trained adapter earn the champion alias?

Pure: per-question scores in, a `Decision` out. Candidate, champion and base answered the
same test questions, so the evidence is paired: for each reference (the base model when
given, the current champion when there is one) the candidate's improvement per question,
in the metric's good direction (reference - candidate for a loss), gets a paired bootstrap
95% interval (`core.bootstrap`, fixed seed). The candidate is promoted only when the lower
bound of *each* interval exceeds `margin`: a mean that is ahead but could be noise does
not move the alias. Questions a reference did not score (None) are left out of that pair;
a missing metric, a non-finite score or unequal question lists never promote; `force=True`
always does, and says so.

    decide({"answer_loss": [1.2, 0.9]}, None, {"answer_loss": [2.0, 1.8]}, "answer_loss")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ragtune.core.bootstrap import RESAMPLES, Comparison, compare, resample_indices

HIGHER_IS_BETTER: dict[str, bool] = {
    "answer_loss": False,
    "token_f1": True,
    "contains": True,
    "citation_accuracy": True,
    "rag_answer_loss": False,
    "rag_token_f1": True,
    "rag_contains": True,
}

Scores = Mapping[str, Sequence[float | None]]  # metric -> one score per question


def pick_metric(setting: str, candidate: Mapping[str, object]) -> str:
    """`auto`: the answer loss with retrieved sources in the prompt (the `finetuned_rag`
    configuration users are served) when it was measured, else the plain answer loss."""
    if setting != "auto":
        return setting
    return "rag_answer_loss" if "rag_answer_loss" in candidate else "answer_loss"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    # the candidate's improvement over each reference ("base", "champion"), good direction
    evidence: tuple[Comparison, ...] = field(default=(), compare=False)

    def evidence_json(self) -> list[dict[str, object]]:
        return [
            {
                "against": c.b,
                "metric": c.metric,
                "improvement": c.difference.mean,
                "ci95": [c.difference.low, c.difference.high],
                "wins": c.wins,
                "ties": c.ties,
                "losses": c.losses,
            }
            for c in self.evidence
        ]


def decide(
    candidate: Scores,
    champion: Scores | None,
    base: Scores | None,
    metric: str,
    margin: float = 0.0,
    force: bool = False,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Decision:
    """Promote `candidate` over `base` and `champion` on `metric`, or say why not."""
    if metric not in HIGHER_IS_BETTER:
        known = ", ".join(sorted(HIGHER_IS_BETTER))
        raise ValueError(f"unknown promotion metric {metric!r}; known metrics: {known}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"promotion margin must be a finite number >= 0, got {margin!r}")
    higher = HIGHER_IS_BETTER[metric]
    direction = "higher is better" if higher else "lower is better"
    scores = candidate.get(metric)

    if force:
        shown = "missing" if not scores else _fmt(_mean(scores))
        return Decision(True, f"forced promotion (candidate {metric} {shown})")
    if not scores:
        return Decision(
            False, f"candidate has no per-question {metric} scores: re-evaluate it or force"
        )
    if _broken(scores):
        return Decision(False, f"candidate {metric} has a score that is not a finite number")

    evidence: list[Comparison] = []
    for label, reference in (("champion", champion), ("base", base)):
        if reference is None:
            continue
        against = reference.get(metric)
        problem = _unusable(against, len(scores))
        if problem:
            return Decision(
                False, f"{label} {metric} {problem}: cannot compare; re-evaluate it or force"
            )
        sign = 1.0 if higher else -1.0  # the improvement, in the metric's good direction
        pairs = [
            (sign * c, sign * r)
            for c, r in zip(scores, against or (), strict=True)
            if c is not None and r is not None
        ]
        if not pairs:
            return Decision(False, f"no question has a {metric} score from candidate and {label}")
        indices = resample_indices(len(pairs), resamples, seed)
        ours, theirs = [c for c, _ in pairs], [r for _, r in pairs]
        evidence.append(compare("candidate", ours, label, theirs, metric, indices))

    if not evidence:
        return Decision(
            True, f"{metric} {_fmt(_mean(scores))} with no champion and no base to beat"
        )
    for gained in evidence:
        if not gained.difference.low > margin:
            return Decision(
                False,
                f"{metric} ({direction}) does not improve on {gained.b} by more than margin "
                f"{_fmt(margin)}: improvement {_improvement(gained)}",
                tuple(evidence),
            )
    improvements = " and ".join(f"on {c.b} by {_improvement(c)}" for c in evidence)
    return Decision(
        True,
        f"{metric} ({direction}) improves {improvements}: each lower bound > margin {_fmt(margin)}",
        tuple(evidence),
    )


def _unusable(values: Sequence[float | None] | None, expected: int) -> str | None:
    if not values:
        return "has no per-question scores"
    if len(values) != expected:
        return f"scored {len(values)} questions, the candidate {expected}"
    if _broken(values):
        return "has a score that is not a finite number"
    return None


def _improvement(c: Comparison) -> str:
    d = c.difference
    questions = c.wins + c.ties + c.losses
    return (
        f"{_fmt(d.mean)} (95% CI [{_fmt(d.low)}, {_fmt(d.high)}], better on {c.wins} "
        f"of {questions} questions)"
    )


def _broken(values: Sequence[float | None]) -> bool:
    return any(v is not None and not math.isfinite(v) for v in values)


def _mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def _fmt(value: float) -> str:
    return f"{value:.3g}"
