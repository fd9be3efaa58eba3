"""`snapshot` stage: the labelled table -> data/training/snapshot.parquet, split by key.

The rows are read through the same source adapter as the index's sources (so names are
checked against the live schema), soft-deleted rows left out, sorted by key, and each
given its deterministic split. Output bytes depend only on the rows, so an unchanged table
gives an identical file and DVC skips every later stage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ragtune.adapters.sources import SqlSource, safe_url
from ragtune.config import Params, TrainingSourceConfig
from ragtune.core.dataset import split_of
from ragtune.core.documents import is_soft_deleted, key_text
from ragtune.stages import POSITION, PROBE, SNAPSHOT, StageContext, write_json

COLUMNS = ["key", "question", "answer", "document", "split", "updated_at"]
CATEGORY = "category"  # a column only when `training.category` names one


def read_labelled(config: TrainingSourceConfig) -> list[dict[str, Any]]:
    """Every present labelled row as {key, question, answer, document, category,
    updated_at}, by key (category None when `training.category` names no column)."""
    source = SqlSource.open("training", config.as_source())
    rows = []
    try:
        for page in source.scan(1000):
            for row in page:
                if config.deleted and is_soft_deleted(row.get(config.deleted)):
                    continue
                rows.append(
                    {
                        "key": key_text(row[config.key]),
                        "question": _text(row.get(config.question)),
                        "answer": _text(row.get(config.answer)),
                        "document": _text(row.get(config.document)) if config.document else None,
                        "category": _text(row.get(config.category)) if config.category else None,
                        "updated_at": _text(row.get(config.updated_at))
                        if config.updated_at
                        else None,
                    }
                )
    finally:
        source.close()
    return sorted(rows, key=lambda r: r["key"])


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def probe(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """What the table holds now, as a digest: the snapshot stage's dependency."""
    rows = read_labelled(params.training_source())
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    found = {"rows": len(rows), "digest": digest}
    path = root / PROBE
    if not path.is_file() or json.loads(path.read_text()) != found:
        write_json(path, found)
    return found


def snapshot(ctx: StageContext) -> None:
    import pandas as pd

    config, split = ctx.params.training_source(), ctx.params.snapshot
    rows = read_labelled(config)
    for row in rows:
        row["split"] = split_of(
            row["key"], split.split_salt, split.validation_fraction, split.test_fraction
        )
    # without a category column the file stays byte-identical to earlier snapshots
    columns = [*COLUMNS, CATEGORY] if config.category else COLUMNS
    frame = pd.DataFrame(rows, columns=columns).astype("string")
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(SNAPSHOT, index=False)
    stamps = [r["updated_at"] for r in rows if r["updated_at"]]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    position: dict[str, Any] = {
        "source": safe_url(config.url),
        "table": config.table,
        "rows": len(rows),
        "max_updated_at": max(stamps) if stamps else None,
        "splits": {k: int(v) for k, v in sorted(counts.items())},
    }
    write_json(POSITION, position)
    ctx.log_params({"snapshot": split.model_dump(), "training.table": config.table})
    ctx.log_metrics({f"rows_{k}": float(v) for k, v in counts.items()})
    print(f"snapshot: {len(rows)} labelled rows {position['splits']}")


def load_snapshot() -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_parquet(SNAPSHOT)
    return [
        {c: (None if pd.isna(v) else str(v)) for c, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
