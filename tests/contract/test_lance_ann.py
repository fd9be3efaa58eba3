"""LanceDB's ANN index keeps recall@10 >= 0.95 against exact search, and stays fresh."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np

from ragtune.adapters.index.base import ChunkRecord, SearchFilter
from ragtune.adapters.index.lance import LanceIndex
from ragtune.config import AnnConfig, IndexConfig
from ragtune.core.ids import chunk_id

DIM, ROWS, CLUSTERS, QUERIES = 384, 20_000, 50, 100


def clustered_vectors(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    """Unit vectors around cluster centres: the crowded shape real embeddings have."""
    picks = rng.integers(0, len(centers), n)
    vectors = centers[picks] + rng.normal(scale=0.35, size=(n, DIM)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def records(vectors: np.ndarray, start: int) -> list[ChunkRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        ChunkRecord(
            chunk_id("docs", str(start + i), 0),
            "docs",
            str(start + i),
            0,
            f"row {start + i}",
            v,
            "h",
            now,
            now,
            None,
            {},
            [],
        )
        for i, v in enumerate(vectors)
    ]


def test_ann_recall_against_exact_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    centers = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    index = LanceIndex(IndexConfig(path=tmp_path / "index", ann=AnnConfig(min_rows=ROWS)))
    index.ensure(DIM)
    vectors = clustered_vectors(rng, ROWS, centers)
    for start in range(0, ROWS, 5000):
        index.upsert(records(vectors[start : start + 5000], start))
    queries = clustered_vectors(rng, QUERIES, centers)

    exact = []
    for q in queries:
        scores = vectors @ q
        exact.append({str(i) for i in np.argsort(-scores)[:10]})

    started = time.perf_counter()
    index.maintain()  # builds the FTS index, and the ANN index at min_rows
    built_s = time.perf_counter() - started
    assert index._has_index("vector")

    from ragtune.adapters.index.lance import filter_sql

    plan = (
        index.table.search(queries[0], vector_column_name="vector")
        .distance_type("cosine")
        .where(filter_sql(SearchFilter()), prefilter=True)
        .nprobes(20)
        .refine_factor(5)
        .limit(10)
        .explain_plan(verbose=True)
    )
    assert "ANNSubIndex" in plan, plan  # the query goes through the ANN index, not a flat scan
    found = [{h.key for h in index.vector_search(q, 10, SearchFilter())} for q in queries]
    recall = float(np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)]))
    print(f"ANN recall@10 = {recall:.3f} over {QUERIES} queries, index built in {built_s:.1f}s")
    assert recall >= 0.95

    fresh = clustered_vectors(rng, 1, centers)  # written after the index: still found
    index.upsert(records(fresh, ROWS))
    assert index.vector_search(fresh[0], 1, SearchFilter())[0].key == str(ROWS)


def test_many_new_rows_are_folded_into_the_indexes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = LanceIndex(IndexConfig(path=tmp_path / "index", optimize_unindexed_rows=500))
    index.ensure(DIM)
    centers = rng.normal(size=(5, DIM)).astype(np.float32)
    for start in range(0, 2000, 250):  # the first write creates the indexes; later rows pile up
        index.upsert(records(clustered_vectors(rng, 250, centers), start))
        index.maintain()
        assert index._unindexed() < 500
    assert index.table.index_stats("text_idx").num_indexed_rows >= 1500
