"""`build_dataset` stage: the validated snapshot -> chat-format SFT examples per split.

`rag_context: none` teaches the answers themselves; `raft` shows each question with
chunks retrieved from the live index — the gold document's chunk (for a share of the
examples) among distractors — in the prompt shape `ask` uses, so the model learns to
answer from its sources and cite them. The index version used is recorded.
"""

from __future__ import annotations

import json
import random

from ragtune.config import Params
from ragtune.core.dataset import (
    SPLITS,
    Example,
    LabelledRow,
    Retrieved,
    plain_examples,
    raft_example,
    split_counts,
)
from ragtune.errors import ConfigError
from ragtune.stages import DATASET, StageContext, write_json
from ragtune.stages.snapshot import load_snapshot


def build_dataset(ctx: StageContext) -> None:
    config = ctx.params.build_dataset
    rows = [
        LabelledRow(r["key"], r["question"] or "", r["answer"] or "", r["split"], r["document"])
        for r in load_snapshot()
    ]
    index_version = None
    if config.rag_context == "raft":
        examples, index_version, gold_found = raft_examples(ctx.params, rows)
    else:
        examples, gold_found = plain_examples(rows, config), 0
    DATASET.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with (DATASET / f"{split}.jsonl").open("w", encoding="utf-8") as out:
            for example in examples:
                if example.split == split:
                    out.write(json.dumps(example.as_record(), sort_keys=True) + "\n")
    counts = split_counts(examples)
    write_json(
        DATASET / "summary.json",
        {
            "rag_context": config.rag_context,
            "examples": counts,
            "index_version": index_version,
            "gold_chunk_found": gold_found,
        },
    )
    ctx.log_params({"build_dataset": config.model_dump()})
    ctx.log_metrics({f"examples_{k}": float(v) for k, v in counts.items()})
    print(f"build_dataset: {counts} ({config.rag_context})")


def load_examples(split: str) -> list[Example]:
    path = DATASET / f"{split}.jsonl"
    with path.open(encoding="utf-8") as lines:
        return [Example.from_record(json.loads(line)) for line in lines if line.strip()]


def raft_examples(params: Params, rows: list[LabelledRow]) -> tuple[list[Example], str, int]:
    from ragtune.adapters.index.base import SearchFilter
    from ragtune.search import search
    from ragtune.workspace import open_embedder, open_index

    config = params.build_dataset
    source = config.raft_source or next(iter(params.sources), None)
    if source is None:
        raise ConfigError("build_dataset.rag_context: raft needs an index source in `sources:`")
    index, embedder = open_index(params), open_embedder(params)
    where = SearchFilter((source,))
    rng = random.Random(config.seed)
    depth = config.raft_distractors + 8
    examples, found_gold = [], 0
    for row in rows:
        hits = search(index, embedder, row.question, params.search, where, k=depth)
        gold = [h for h in hits if row.document and h.key == row.document]
        if row.document and not gold:  # the answer text finds its own chunk
            gold = [
                h
                for h in search(index, embedder, row.answer, params.search, where, k=5)
                if h.key == row.document
            ]
        found_gold += bool(gold)
        others = [h for h in hits if h.key != row.document][: config.raft_distractors]
        retrieved = Retrieved(gold=gold[:1], distractors=others)
        include = rng.random() < config.raft_gold_fraction or row.split != "train"
        examples.append(raft_example(row, config, retrieved, include, rng))
    return examples, index.version(), found_gold
