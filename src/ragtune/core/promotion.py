"""Champion/challenger promotion rule: does a freshly trained adapter earn the champion alias?

Pure: scores in, a `Decision` out. A candidate is promoted only when, on the chosen metric
and in that metric's good direction, it beats the base model (when given) and the current
champion (when there is one) each by at least `margin` (and by more than nothing). A score
that is missing, NaN or infinite never promotes; `force=True` always does, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

HIGHER_IS_BETTER: dict[str, bool] = {
    "answer_loss": False,
    "token_f1": True,
    "contains": True,
    "citation_accuracy": True,
    "rag_answer_loss": False,
    "rag_token_f1": True,
    "rag_contains": True,
}


def pick_metric(setting: str, candidate: Mapping[str, float]) -> str:
    """`auto`: the answer loss with retrieved sources in the prompt (the `finetuned_rag`
    configuration users are served) when it was measured, else the plain answer loss."""
    if setting != "auto":
        return setting
    return "rag_answer_loss" if "rag_answer_loss" in candidate else "answer_loss"


_TOLERANCE = 1e-12  # so that 0.41 - 0.35 >= 0.06 holds despite float rounding


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    base: Mapping[str, float] | None,
    metric: str,
    margin: float = 0.0,
    force: bool = False,
) -> Decision:
    """Promote `candidate` over `base` and `champion` on `metric`, or say why not."""
    if metric not in HIGHER_IS_BETTER:
        known = ", ".join(sorted(HIGHER_IS_BETTER))
        raise ValueError(f"unknown promotion metric {metric!r}; known metrics: {known}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"promotion margin must be a finite number >= 0, got {margin!r}")
    higher = HIGHER_IS_BETTER[metric]
    direction = "higher is better" if higher else "lower is better"
    score = candidate.get(metric)

    if force:
        shown = "missing" if score is None else _fmt(score)
        return Decision(True, f"forced promotion (candidate {metric} {shown})")
    if score is None:
        return Decision(False, f"candidate has no {metric} score")
    if not math.isfinite(score):
        return Decision(False, f"candidate {metric} is {score}, not a finite number")

    gains: list[str] = []
    for label, scores in (("base", base), ("champion", champion)):
        if scores is None:
            continue
        reference = scores.get(metric)
        if reference is None or not math.isfinite(reference):
            shown = "missing" if reference is None else str(reference)
            return Decision(
                False,
                f"{label} {metric} is {shown}: cannot compare; re-evaluate it or force",
            )
        gain = score - reference if higher else reference - score
        if gain <= 0 or gain < margin - _TOLERANCE:
            return Decision(
                False,
                f"{metric} {_fmt(score)} does not beat {label} {_fmt(reference)} "
                f"by margin {_fmt(margin)} (gain {_fmt(gain)}, {direction})",
            )
        gains.append(f"{label} {_fmt(reference)} by {_fmt(gain)}")

    if not gains:
        return Decision(True, f"{metric} {_fmt(score)} with no champion and no base to beat")
    return Decision(
        True,
        f"{metric} {_fmt(score)} beats {' and '.join(gains)} (margin {_fmt(margin)}, {direction})",
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}"
