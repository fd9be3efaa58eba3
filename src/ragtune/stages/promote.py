"""`promote` stage: register the candidate, then move `champion` only if it wins.

The candidate's adapter becomes a new version of `ragtune-generator` with the lineage
tags (data version, source position, index version, base model, git commit). The pure
decision (`core.promotion.decide`) compares candidate, champion and base on
`promote.metric`; a winner gets alias `champion`, any other version `challenger`. The
labelled keys it was trained on are recorded, so a later delete at the source can flag it.
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
    decision = decide(
        report["candidate"],
        report["champion"],
        report["base"],
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
            "lineage": tags,
        },
    )
    outcome = "champion" if decision.promote else "challenger"
    print(f"promote: version {version} is {outcome}: {decision.reason}")
