"""One contract for every index backend: LanceDB always, Weaviate when WEAVIATE_URL is set.

Vectors are synthetic unit vectors, so the suite tests the index alone: upserts by id,
deletes by key and by surplus chunk, the ledger, vector and full-text search under
source, metadata and tenant filters, statistics and versions.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragtune.adapters.index.base import ChunkRecord, SearchFilter
from ragtune.config import IndexConfig
from ragtune.core.documents import metadata_tags
from ragtune.core.ids import chunk_id
from ragtune.errors import IndexStoreError

DIM = 16
BACKENDS = ["lancedb"] + (["weaviate"] if os.environ.get("WEAVIATE_URL") else [])
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(params=BACKENDS)
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "lancedb":
        from ragtune.adapters.index.lance import LanceIndex

        backend: Any = LanceIndex(IndexConfig(path=tmp_path / "index"))
    else:
        from ragtune.adapters.index.weaviate import WeaviateIndex

        name = f"RagtuneContract{uuid.uuid4().hex[:8]}"
        backend = WeaviateIndex(
            IndexConfig(
                backend="weaviate",
                url=os.environ["WEAVIATE_URL"],
                collection=name,
                api_key=os.environ.get("WEAVIATE_API_KEY"),
            )
        )
    backend.ensure(DIM)
    yield backend
    if request.param == "weaviate":
        backend.client.collections.delete(backend.name)
    backend.close()


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def record(
    source: str,
    key: str,
    chunk: int,
    text: str,
    digest: str = "h1",
    tenant: str | None = None,
    metadata: dict[str, Any] | None = None,
    seed: int | None = None,
    changed_s: float = 0.0,
    chunk_hash: str = "",
) -> ChunkRecord:
    meta = metadata if metadata is not None else {"section": "a"}
    return ChunkRecord(
        id=chunk_id(source, key, chunk),
        source=source,
        key=key,
        chunk=chunk,
        text=text,
        # a seed from the ids themselves: the same vectors under every PYTHONHASHSEED
        vector=unit(seed if seed is not None else zlib.crc32(f"{source}/{key}/{chunk}".encode())),
        content_hash=digest,
        changed_at=T0,
        indexed_at=T0 + dt.timedelta(seconds=changed_s),
        tenant=tenant,
        metadata=meta,
        meta_tags=metadata_tags(meta),
        chunk_hash=chunk_hash or f"c-{key}-{chunk}-{text}",
    )


def test_upsert_by_id_replaces_and_ledger_reports(index: Any) -> None:
    index.upsert(
        [
            record("docs", "1", 0, "alpha"),
            record("docs", "1", 1, "beta"),
            record("docs", "2", 0, "gamma"),
        ]
    )
    index.upsert(
        [
            record("docs", "1", 0, "alpha v2", digest="h2"),
            record("docs", "1", 1, "beta v2", digest="h2"),
        ]
    )
    ledger = index.ledger("docs", ["1", "2", "3"])
    assert set(ledger) == {"1", "2"}
    assert dict(ledger["1"].hashes) == {0: "h2", 1: "h2"}
    assert dict(ledger["2"].hashes) == {0: "h1"}
    assert index.keys("docs") == {"1", "2"}
    assert index.stats("docs").chunks == 3


def test_deletes_by_key_and_surplus_stay_within_a_source(index: Any) -> None:
    index.upsert([record("docs", k, c, f"text {k} {c}") for k in ("1", "2", "3") for c in range(3)])
    index.upsert([record("other", "1", 0, "same key, other source")])
    index.delete_keys("docs", ["1", "9"])
    index.delete_surplus("docs", {"2": 1, "3": 2})
    assert {k: sorted(v.hashes) for k, v in index.ledger("docs", ["1", "2", "3"]).items()} == {
        "2": [0],
        "3": [0, 1],
    }
    assert index.keys("other") == {"1"}


def test_awkward_keys_are_data_not_syntax(index: Any) -> None:
    keys = ["O'Brien", "x' OR '1'='1", 'quote"d', "semi;colon -- comment", "ünïcode", "back\\slash"]
    index.upsert([record("docs", k, 0, f"row {k}") for k in keys])
    assert index.keys("docs") == set(keys)
    index.delete_keys("docs", keys[:3])
    assert index.keys("docs") == set(keys[3:])
    assert {h.key for h in index.text_search("row", 10, SearchFilter())} == set(keys[3:])


def test_vector_search_ranks_by_cosine(index: Any) -> None:
    index.upsert([record("docs", str(i), 0, f"doc {i}", seed=i) for i in range(30)])
    hits = index.vector_search(unit(7), 5, SearchFilter())
    assert hits[0].key == "7"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    brute = sorted(range(30), key=lambda i: -float(unit(i) @ unit(7)))[:5]
    assert [h.key for h in hits] == [str(i) for i in brute]


def test_filters_on_source_metadata_and_tenant(index: Any) -> None:
    index.upsert(
        [
            record("docs", "pub", 0, "shared words here", metadata={"section": "a", "lang": "en"}),
            record(
                "docs",
                "acme",
                0,
                "shared words here",
                tenant="acme",
                metadata={"section": "a", "lang": "de"},
            ),
            record(
                "docs",
                "globex",
                0,
                "shared words here",
                tenant="globex",
                metadata={"section": "b", "lang": "en"},
            ),
            record("notes", "n", 0, "shared words here", metadata={"section": "a"}),
        ]
    )
    for search in (
        lambda f: index.vector_search(unit(1), 10, f),
        lambda f: index.text_search("shared words", 10, f),
    ):
        assert {h.key for h in search(SearchFilter())} == {"pub", "n"}
        assert {h.key for h in search(SearchFilter(tenant="acme"))} == {"pub", "n", "acme"}
        assert {h.key for h in search(SearchFilter(tenant="nobody"))} == {"pub", "n"}
        assert {h.key for h in search(SearchFilter(sources=("docs",), tenant="globex"))} == {
            "pub",
            "globex",
        }
        assert {
            h.key for h in search(SearchFilter(tags=("section=a", "lang=de"), tenant="acme"))
        } == {"acme"}
        assert {h.key for h in search(SearchFilter(tags=("section=b",)))} == set()


def test_text_search_matches_words(index: Any) -> None:
    index.upsert(
        [
            record("docs", "1", 0, "PostgreSQL logical replication slots"),
            record("docs", "2", 0, "baking sourdough bread at home"),
        ]
    )
    hits = index.text_search("replication", 5, SearchFilter())
    assert [h.key for h in hits] == ["1"]
    assert hits[0].metadata == {"section": "a"}


def test_stats_and_version(index: Any) -> None:
    before = index.version()
    index.upsert(
        [
            record("docs", "1", 0, "a", changed_s=2.0),
            record("docs", "1", 1, "b"),
            record("docs", "2", 0, "c", changed_s=4.0),
        ]
    )
    after = index.version()
    assert after != before
    stats = index.stats("docs")
    assert (stats.documents, stats.chunks) == (2, 3)
    assert sorted(stats.lags_s) == [2.0, 4.0]
    assert index.stats("nothing").chunks == 0


def test_wrong_dimension_is_refused(index: Any) -> None:
    with pytest.raises(IndexStoreError):
        index.ensure(DIM + 1)


def test_ledger_and_vectors_carry_chunk_hashes(index: Any) -> None:
    index.upsert(
        [
            record("docs", "1", 0, "a", seed=11),
            record("docs", "1", 1, "b", seed=12),
            record("docs", "2", 0, "c", seed=13),
        ]
    )
    assert dict(index.ledger("docs", ["1"])["1"].chunk_hashes) == {0: "c-1-0-a", 1: "c-1-1-b"}
    vectors = index.vectors("docs", ["1"])
    assert set(vectors) == {("1", "c-1-0-a"), ("1", "c-1-1-b")}
    assert np.allclose(vectors[("1", "c-1-1-b")], unit(12), atol=1e-6)
    assert index.vectors("docs", []) == {}
