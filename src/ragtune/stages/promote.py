"""`promote` stage: register the candidate, then move `champion` only on evidence.

The candidate's adapter becomes a new version of `ragtune-generator` with the lineage
tags (data version, source position, index version, base model, git commit). The pure
decision (`core.promotion.decide`) reads the per-question scores the `evaluate` stage
wrote and compares candidate with champion and base on `promote.metric` by paired
bootstrap: the version gets alias `champion` only when the lower bound of the 95%
interval of its improvement over each exceeds `promote.margin` (or `promote.force`), any
other version `challenger`. The reason, with its intervals, is tagged on the version and
written to reports/promote.json. The labelled keys it was trained on are recorded, so a
later delete at the source can flag it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.adapters.state import StateStore
from ragtune.adapters.versioning import file_md5, git_commit
from ragtune.core.promotion import decide, pick_metric
from ragtune.stages import (
    CANDIDATE,
    DATASET,
    EVALUATION,
    POSITION,
    PROMOTION,
    SNAPSHOT,
    StageContext,
    read_json,
    write_json,
)


def lineage(params: Any) -> dict[str, str]:
    position = read_json(POSITION)
    dataset = read_json(DATASET / "summary.json")
    run = read_json(CANDIDATE / "run.json")
    return {
        "ragtune.data_version": file_md5(SNAPSHOT),
        "ragtune.source_position": f"{position['rows']} rows, max updated_at "
        f"{position['max_updated_at']}",
        "ragtune.index_version": str(
            dataset.get("index_version") or read_json(EVALUATION).get("index_version") or "none"
        ),
        "ragtune.base_model": run["base_model"],
        "ragtune.rag_context": params.build_dataset.rag_context,
        "ragtune.git_commit": git_commit(Path(".")),
    }


def promote(ctx: StageContext) -> None:
    config = ctx.params.promote
    report = read_json(EVALUATION)
    run = read_json(CANDIDATE / "run.json")
    tags = lineage(ctx.params)
    version = ctx.tracker.register(run["run_id"], "adapter", tags)
    metric = pick_metric(config.metric, report["candidate"])
    scores = report.get("per_question") or {}  # none in a report from before per-question
    decision = decide(
        scores.get("candidate") or {},
        (scores.get("champion") or {}) if report["champion"] is not None else None,
        scores.get("base") or {},
        metric,
        config.margin,
        config.force,
    )
    ctx.tracker.set_alias("champion" if decision.promote else "challenger", version)
    ctx.tracker.tag_version(version, "ragtune.promotion", decision.reason)
    keys = read_json(CANDIDATE / "trained_keys.json")
    StateStore(ctx.params.workspace.path).record_trained_keys(version, keys)
    ctx.tracker.set_tags(ctx.run_id, {**tags, "ragtune.model_version": version})
    write_json(
        PROMOTION,
        {
            "version": version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "metric": metric,
            "margin": config.margin,
            "evidence": decision.evidence_json(),
            "lineage": tags,
        },
    )
    for gained in decision.evidence:
        ctx.log_metrics(
            {
                f"improvement_on_{gained.b}": gained.difference.mean,
                f"improvement_on_{gained.b}_ci95_low": gained.difference.low,
                f"improvement_on_{gained.b}_ci95_high": gained.difference.high,
            }
        )
    outcome = "champion" if decision.promote else "challenger"
    print(f"promote: version {version} is {outcome}: {decision.reason}")
