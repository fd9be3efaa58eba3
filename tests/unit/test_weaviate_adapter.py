"""The Weaviate adapter's own logic against a stand-in collection (no server here):
per-object write errors are raised, deletes page past the server's cap, filters hold
the tenant rule. The live behaviour is covered by the contract suite with WEAVIATE_URL."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ragtune.adapters.index.base import ChunkRecord, SearchFilter
from ragtune.adapters.index.weaviate import PUBLIC_TENANT, WeaviateIndex, parse_url
from ragtune.errors import ConfigError, IndexStoreError

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class StandInData:
    def __init__(self, stored: int = 0, cap: int = 10_000, fail_ids: set[str] | None = None):
        self.stored, self.cap, self.fail_ids = stored, cap, fail_ids or set()
        self.inserted: list[Any] = []
        self.delete_calls = 0

    def insert_many(self, objects: list[Any]) -> Any:
        errors = {
            i: SimpleNamespace(message="vector dimension mismatch")
            for i, o in enumerate(objects)
            if str(o.uuid) in self.fail_ids
        }
        self.inserted += objects
        return SimpleNamespace(has_errors=bool(errors), errors=errors)

    def delete_many(self, where: Any) -> Any:
        self.delete_calls += 1
        batch = min(self.cap, self.stored)
        self.stored -= batch
        return SimpleNamespace(matches=batch, successful=batch)


def adapter(data: StandInData) -> WeaviateIndex:
    index = WeaviateIndex.__new__(WeaviateIndex)
    index._collection = SimpleNamespace(data=data)
    index.name = "Test"
    return index


def record(key: str, tenant: str | None = None) -> ChunkRecord:
    return ChunkRecord(
        f"00000000-0000-0000-0000-{int(key):012d}",
        "docs",
        key,
        0,
        "t",
        np.ones(4, np.float32),
        "h",
        NOW,
        NOW,
        tenant,
        {"a": 1},
        ["a=1"],
    )


def test_untenanted_chunks_carry_the_public_sentinel_and_errors_are_raised() -> None:
    data = StandInData(fail_ids={"00000000-0000-0000-0000-000000000002"})
    with pytest.raises(
        IndexStoreError, match=r"rejected 1 of 3 chunks .*2: vector dimension mismatch"
    ):
        adapter(data).upsert([record("1"), record("2", "acme"), record("3")])
    tenants = [o.properties["tenant"] for o in data.inserted]
    assert tenants == [PUBLIC_TENANT, "acme", PUBLIC_TENANT]


def test_deletes_page_past_the_server_cap() -> None:
    data = StandInData(stored=25_000, cap=10_000)
    adapter(data).delete_keys("docs", ["1", "2"])
    assert data.stored == 0 and data.delete_calls == 4  # 10k, 10k, 5k, then nothing matches


def clauses(where: Any) -> dict[str, tuple[str, list[str]]]:
    """target -> (operator, values) of an AND of simple filters."""
    parts = getattr(where, "filters", [where])
    return {p.target: (p.operator.value, list(p.value)) for p in parts}


def test_filters_keep_tenants_apart() -> None:
    index = adapter(StandInData())
    scoped = clauses(index._filter(SearchFilter(sources=("docs",), tags=("a=1",), tenant="acme")))
    assert scoped == {
        "source": ("ContainsAny", ["docs"]),
        "meta_tags": ("ContainsAll", ["a=1"]),
        "tenant": ("ContainsAny", [PUBLIC_TENANT, "acme"]),
    }
    assert clauses(index._filter(SearchFilter())) == {"tenant": ("ContainsAny", [PUBLIC_TENANT])}


def test_url_parsing() -> None:
    assert parse_url("http://localhost:8080") == ("localhost", 8080, False)
    assert parse_url("https://w.example.com") == ("w.example.com", 443, True)
    with pytest.raises(ConfigError):
        parse_url("localhost:8080")
