"""`validate` stage: the training-snapshot suite (Great Expectations) gates training.

A snapshot that fails (missing or out-of-bounds question/answer, duplicate questions, an
evaluation question in the training split, too few rows) stops the pipeline here, before
any training, with the failed expectations named; the Data Docs page shows the details.
"""

from __future__ import annotations

from ragtune.adapters.quality import QualityGate
from ragtune.core.quality import training_rows
from ragtune.errors import QualityGateError
from ragtune.stages import VALIDATION, StageContext, write_json
from ragtune.stages.snapshot import load_snapshot


def validate(ctx: StageContext) -> None:
    rows = load_snapshot()
    checked = training_rows(
        [r["key"] for r in rows],
        [r["question"] for r in rows],
        [r["answer"] for r in rows],
        [r["split"] for r in rows],
    )
    gate = QualityGate(ctx.params.workspace.path, ctx.params.quality)
    report = gate.validate_training(checked)
    docs = gate.build_docs(force=True)
    summary = {
        "success": report.success,
        "rows": len(rows),
        "failed_rows": dict(sorted(report.rows.items())),
        "failed_batch": report.describe_batch() if report.batch else None,
        "data_docs": str(docs) if docs else None,
    }
    write_json(VALIDATION, summary)
    ctx.log_params({"quality.training": ctx.params.quality.training.model_dump()})
    ctx.log_metrics({"failed_rows": float(len(report.rows))})
    if not report.success:
        problems = []
        if report.batch:
            problems.append(report.describe_batch())
        if report.rows:
            key, reasons = next(iter(sorted(report.rows.items())))
            problems.append(f"{len(report.rows)} rows failed (e.g. {key}: {'; '.join(reasons)})")
        raise QualityGateError(
            f"training snapshot failed its suite: {' | '.join(problems)}; fix the labelled "
            f"rows at the source and run again (Data Docs: {docs})"
        )
    print(f"validate: {len(rows)} rows passed the training-snapshot suite")
