"""Search latency p50/p95, query embedding included, vector-only and hybrid: on the demo
corpus, and on a 100k-chunk index (the demo's chunks repeated with perturbed vectors,
with its ANN index built)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from common import p50_p95, repeat

from ragtune.adapters.index.base import SearchFilter
from ragtune.adapters.index.lance import LanceIndex
from ragtune.config import IndexConfig, SearchConfig
from ragtune.core.ids import chunk_id
from ragtune.search import search

QUERIES = [
    "How do I add a custom field to a model form?",
    "database migrations",
    "select_related vs prefetch_related",
    "CSRF protection in AJAX requests",
    "custom user model",
    "class-based views mixins",
    "timezone support",
    "how to write a management command",
    "cache the result of a view",
    "signals post_save",
    "serve static files in production",
    "QuerySet annotate aggregate",
    "translations gettext",
    "testing with the test client",
    "deploy with ASGI",
    "password hashing",
    "admin actions",
    "form validation clean method",
    "middleware order",
    "raw SQL queries",
]


def run(
    index_path: Path, embedder: Any, target_rows: int = 100_000, repeats: int = 3
) -> dict[str, Any]:
    config = SearchConfig()
    demo = LanceIndex(IndexConfig(path=index_path))
    results = {
        "demo": _measure(demo, embedder, config, repeats),
        "demo_chunks": demo.table.count_rows(),
    }
    big_path = Path(tempfile.mkdtemp(prefix="ragtune-bench-100k-")) / "index"
    big = _grow(demo, big_path, target_rows)
    results["100k"] = _measure(big, embedder, config, repeats)
    results["100k_chunks"] = big.table.count_rows()
    return results


def _measure(
    index: LanceIndex, embedder: Any, config: SearchConfig, repeats: int
) -> dict[str, Any]:
    out = {}
    for mode in ("vector", "hybrid"):
        search(index, embedder, QUERIES[0], config, SearchFilter(), mode=mode)  # warm
        timings: list[float] = []
        for query in QUERIES:
            timings += repeat(
                lambda q=query, m=mode: search(
                    index, embedder, q, config, SearchFilter(), k=5, mode=m
                ),
                repeats,
            )
        out[mode] = p50_p95(timings)
    return out


def _grow(demo: LanceIndex, path: Path, target_rows: int) -> LanceIndex:
    """Copies of the demo chunks with new ids and perturbed vectors, up to target_rows."""
    base = demo.table.to_arrow()
    dim = base.schema.field("vector").type.list_size
    big = LanceIndex(IndexConfig(path=path))
    big.ensure(dim)
    rng = np.random.default_rng(0)
    vectors = np.stack(base["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    copy = 0
    while big.table.count_rows() < target_rows:
        noisy = vectors + rng.normal(scale=0.02, size=vectors.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        keys = [f"{k}~{copy}" for k in base["key"].to_pylist()]
        table = base.set_column(base.schema.get_field_index("key"), "key", pa.array(keys))
        table = table.set_column(
            table.schema.get_field_index("id"),
            "id",
            pa.array(
                [
                    chunk_id("docs", k, c)
                    for k, c in zip(keys, base["chunk"].to_pylist(), strict=True)
                ]
            ),
        )
        table = table.set_column(
            table.schema.get_field_index("vector"),
            "vector",
            pa.FixedSizeListArray.from_arrays(pa.array(noisy.ravel()), dim),
        )
        big.table.add(table.cast(big.table.schema))
        copy += 1
    big.maintain()
    big.table.optimize()
    return big
