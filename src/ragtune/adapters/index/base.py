"""The vector index interface every backend implements (LanceDB, Weaviate).

Every chunk carries its own ledger fields (source, key, chunk number, content hash,
changed_at, indexed_at), so the index alone says what it holds; there is no side
docstore that could disagree with it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ragtune.core.sync_plan import IndexedDoc


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    source: str
    key: str
    chunk: int
    text: str
    vector: np.ndarray
    content_hash: str
    changed_at: dt.datetime
    indexed_at: dt.datetime
    tenant: str | None
    metadata: Mapping[str, Any]
    meta_tags: Sequence[str]
    chunk_hash: str = ""

    @property
    def metadata_json(self) -> str:
        return json.dumps(dict(self.metadata), ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class SearchFilter:
    """Which chunks a search may return.

    `tags` are `name=value` metadata equalities that must all hold. Without a tenant only
    chunks of untenanted rows match; with one, that tenant's chunks and untenanted ones.
    """

    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tenant: str | None = None


@dataclass(frozen=True)
class SearchHit:
    id: str
    source: str
    key: str
    chunk: int
    text: str
    metadata: Mapping[str, Any]
    score: float
    changed_at: dt.datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceStats:
    documents: int
    chunks: int
    lags_s: Sequence[float]


class VectorIndex(Protocol):
    backend: str

    def ensure(self, dimension: int) -> None:
        """Create the table/collection if missing; check the vector dimension otherwise."""
        ...

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Insert or overwrite chunks by id; durable when this returns."""
        ...

    def delete_keys(self, source: str, keys: Sequence[str]) -> None:
        """Remove every chunk of these keys."""
        ...

    def delete_surplus(self, source: str, first_surplus: Mapping[str, int]) -> None:
        """For each key, remove its chunks numbered >= the given number."""
        ...

    def ledger(self, source: str, keys: Sequence[str]) -> dict[str, IndexedDoc]:
        """What the index holds for these keys (absent keys are missing from the result)."""
        ...

    def keys(self, source: str) -> set[str]:
        """Every key of a source that has at least one chunk."""
        ...

    def vectors(self, source: str, keys: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
        """(key, chunk_hash) -> stored vector, for every chunk of these keys."""
        ...

    def vector_search(self, vector: np.ndarray, k: int, where: SearchFilter) -> list[SearchHit]: ...

    def text_search(self, text: str, k: int, where: SearchFilter) -> list[SearchHit]: ...

    def stats(self, source: str) -> SourceStats: ...

    def version(self) -> str:
        """An identifier of the index's current state; changes with every write."""
        ...

    def maintain(self) -> None:
        """Periodic upkeep (compaction, ANN index build) after writes."""
        ...

    def close(self) -> None: ...


def dedupe_by_id(records: Sequence[ChunkRecord]) -> list[ChunkRecord]:
    """The last record of each id, in first-seen order."""
    latest: dict[str, ChunkRecord] = {}
    for record in records:
        latest[record.id] = record
    return list(latest.values())
