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

from ragtune.core.index_health import failure_kind, failure_message, failure_reason
from ragtune.core.sync_plan import IndexedDoc
from ragtune.errors import IndexStoreError


class IndexDamagedError(IndexStoreError):
    """The index lost data: files missing or unreadable, or gone since a source was indexed.

    The message names the fix, `ragtune sync --full --rebuild`."""


def store_error(location: str, action: str, exc: BaseException) -> IndexStoreError:
    """A backend's failure as ragtune's own one-line error: a full disk and a refused
    access say so; anything else is damage, with the rebuild command."""
    code = getattr(exc, "errno", None)
    kind = failure_kind(str(exc), code if isinstance(code, int) else None)
    message = failure_message(location, action, kind, failure_reason(str(exc)))
    return IndexDamagedError(message) if kind == "damaged" else IndexStoreError(message)


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

    def identity(self) -> str | None:
        """The id of the physical index (a new one whenever it is created again), None when
        there is none yet; IndexDamagedError when it exists but its files are missing or
        unreadable."""
        ...

    def drop_if_damaged(self) -> bool:
        """Remove the index if `identity()` finds it damaged (what is left of it cannot be
        trusted); True when it did."""
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
