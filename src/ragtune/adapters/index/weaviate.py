"""Weaviate backend (weaviate-client v4): a collection holding our own vectors.

Objects carry deterministic uuid5 ids (the chunk id), so a batch write of an existing id
replaces it. Writes go through `insert_many` in bounded chunks and every per-object error
is raised, never only logged. Deletes are paged: the server deletes at most
QUERY_MAXIMUM_RESULTS (10,000 by default) objects a call. Untenanted chunks carry a
sentinel tenant, so tenant filters need no null-state index. A server-side failure leaves
this module as ragtune's own one-line IndexStoreError.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from ragtune.adapters.index.base import (
    ChunkRecord,
    SearchFilter,
    SearchHit,
    SourceStats,
    store_error,
)
from ragtune.config import IndexConfig
from ragtune.core.index_health import failure_kind, failure_reason
from ragtune.core.paging import page_deletes
from ragtune.core.sync_plan import IndexedDoc
from ragtune.errors import ConfigError, IndexStoreError, RagtuneError

PUBLIC_TENANT = "__ragtune_public__"
WRITE_CHUNK = 200
KEY_CHUNK = 200
FETCH_LIMIT = 10_000
RETURNED = ["source", "key", "chunk", "text", "metadata", "changed_at"]


def _tenant_of(stored: object) -> str | None:
    """The row's tenant from what a chunk stores (the sentinel means untenanted)."""
    return None if stored is None or stored == PUBLIC_TENANT else str(stored)


Method = TypeVar("Method", bound=Callable[..., Any])


def guarded(action: str) -> Callable[[Method], Method]:
    """Turn a Weaviate failure inside the method into a one-line IndexStoreError."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def call(self: WeaviateIndex, *args: Any, **kwargs: Any) -> Any:
            from weaviate.exceptions import WeaviateBaseError

            try:
                return method(self, *args, **kwargs)
            except RagtuneError:
                raise
            except WeaviateBaseError as exc:
                location = f"{self.config.url} (collection {self.name})"
                if failure_kind(str(exc)) == "disk_full":
                    raise store_error(location, action, exc) from exc
                raise IndexStoreError(
                    f"Weaviate at {location} failed to {action}: {failure_reason(str(exc))}; "
                    "check that the server runs and answers at index.url"
                ) from exc

        return call  # type: ignore[return-value]

    return decorate


def parse_url(url: str) -> tuple[str, int, bool]:
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"index.url: expected http(s)://host[:port], got {url!r}")
    secure = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if secure else 80), secure


class WeaviateIndex:
    backend = "weaviate"

    def __init__(self, config: IndexConfig):
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout
        from weaviate.exceptions import WeaviateBaseError

        assert config.url
        host, port, secure = parse_url(config.url)
        self.config = config
        self.name = config.collection
        try:
            self.client = weaviate.connect_to_custom(
                http_host=host,
                http_port=port,
                http_secure=secure,
                grpc_host=os.environ.get("WEAVIATE_GRPC_HOST") or host,
                grpc_port=int(os.environ.get("WEAVIATE_GRPC_PORT") or 50051),
                grpc_secure=secure,
                auth_credentials=Auth.api_key(config.api_key) if config.api_key else None,
                additional_config=AdditionalConfig(timeout=Timeout(init=10, query=60, insert=120)),
                skip_init_checks=True,
            )
        except (WeaviateBaseError, ValueError) as exc:
            raise IndexStoreError(
                f"cannot reach Weaviate at {config.url}: {str(exc).splitlines()[0]}; "
                "check index.url and that the server runs"
            ) from None
        self._collection: Any = None
        self._ensured: int | None = None

    # -- schema ---------------------------------------------------------------------------

    @property
    def collection(self) -> Any:
        if self._collection is None:
            if not self.client.collections.exists(self.name):
                raise IndexStoreError(
                    f"Weaviate collection {self.name} does not exist yet; run a sync"
                )
            self._collection = self.client.collections.use(self.name)
        return self._collection

    def exists(self) -> bool:
        return bool(self.client.collections.exists(self.name))

    @guarded("write")
    def ensure(self, dimension: int) -> None:
        from weaviate.classes.config import (
            Configure,
            DataType,
            Property,
            Tokenization,
            VectorDistances,
        )

        if self._ensured == dimension:
            return
        if self.client.collections.exists(self.name):
            description = self.client.collections.use(self.name).config.get().description or ""
            if f"dim={dimension}" not in description:
                raise IndexStoreError(
                    f"Weaviate collection {self.name} was built for other vectors ({description}); "
                    "use another index.collection or delete it"
                )
            self._ensured = dimension
            return

        def field(name: str, kind: Any = DataType.TEXT) -> Any:
            return Property(
                name=name, data_type=kind, tokenization=Tokenization.FIELD, index_searchable=False
            )

        self.client.collections.create(
            self.name,
            description=f"ragtune chunks dim={dimension}",
            properties=[
                field("source"),
                field("key"),
                Property(name="chunk", data_type=DataType.INT),
                Property(
                    name="text",
                    data_type=DataType.TEXT,
                    tokenization=Tokenization.WORD,
                    index_searchable=True,
                    index_filterable=False,
                ),
                field("content_hash"),
                field("chunk_hash"),
                Property(name="changed_at", data_type=DataType.DATE),
                Property(name="indexed_at", data_type=DataType.DATE),
                field("tenant"),
                Property(
                    name="metadata",
                    data_type=DataType.TEXT,
                    index_filterable=False,
                    index_searchable=False,
                ),
                field("meta_tags", DataType.TEXT_ARRAY),
            ],
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(
                    distance_metric=VectorDistances.COSINE
                )
            ),
        )
        self._ensured = dimension

    # -- writes ---------------------------------------------------------------------------

    @guarded("write")
    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        from weaviate.classes.data import DataObject
        from weaviate.exceptions import WeaviateBaseError

        for start in range(0, len(records), WRITE_CHUNK):
            objects = [
                DataObject(
                    uuid=r.id,
                    vector=[float(x) for x in r.vector],
                    properties={
                        "source": r.source,
                        "key": r.key,
                        "chunk": r.chunk,
                        "text": r.text,
                        "content_hash": r.content_hash,
                        "chunk_hash": r.chunk_hash,
                        "changed_at": r.changed_at,
                        "indexed_at": r.indexed_at,
                        "tenant": r.tenant if r.tenant is not None else PUBLIC_TENANT,
                        "metadata": r.metadata_json,
                        "meta_tags": list(r.meta_tags),
                    },
                )
                for r in records[start : start + WRITE_CHUNK]
            ]
            try:
                result = self.collection.data.insert_many(objects)
            except WeaviateBaseError as exc:
                raise IndexStoreError(f"Weaviate rejected a chunk batch: {exc}") from None
            if result.has_errors:
                index, error = next(iter(result.errors.items()))
                raise IndexStoreError(
                    f"Weaviate rejected {len(result.errors)} of {len(objects)} chunks "
                    f"(first: {objects[index].properties['key']}: {error.message})"
                )

    def _delete_page(self, where: Any) -> tuple[int, int]:
        result = self.collection.data.delete_many(where=where)
        return int(result.matches), int(result.successful)

    @guarded("write")
    def delete_keys(self, source: str, keys: Sequence[str]) -> None:
        from weaviate.classes.query import Filter

        unique = sorted(set(keys))
        for start in range(0, len(unique), KEY_CHUNK):
            where = Filter.by_property("source").equal(source) & Filter.by_property(
                "key"
            ).contains_any(unique[start : start + KEY_CHUNK])
            page_deletes(self._delete_page, where)

    @guarded("write")
    def delete_surplus(self, source: str, first_surplus: Mapping[str, int]) -> None:
        from weaviate.classes.query import Filter

        items = sorted(first_surplus.items())
        for start in range(0, len(items), 50):
            where = Filter.by_property("source").equal(source) & Filter.any_of(
                [
                    Filter.by_property("key").equal(key)
                    & Filter.by_property("chunk").greater_or_equal(first)
                    for key, first in items[start : start + 50]
                ]
            )
            page_deletes(self._delete_page, where)

    # -- reads ----------------------------------------------------------------------------

    def _objects_of_keys(self, source: str, keys: Sequence[str], vectors: bool) -> list[Any]:
        from weaviate.classes.query import Filter

        if not self.exists():
            return []
        objects: list[Any] = []
        unique = sorted(set(keys))
        for start in range(0, len(unique), KEY_CHUNK):
            result = self.collection.query.fetch_objects(
                filters=Filter.by_property("source").equal(source)
                & Filter.by_property("key").contains_any(unique[start : start + KEY_CHUNK]),
                limit=FETCH_LIMIT,
                include_vector=vectors,
                return_properties=["key", "chunk", "content_hash", "chunk_hash", "tenant"],
            )
            if len(result.objects) >= FETCH_LIMIT:
                raise IndexStoreError("too many chunks per key batch; lower sync.batch_size")
            objects += result.objects
        return objects

    @guarded("read")
    def ledger(self, source: str, keys: Sequence[str]) -> dict[str, IndexedDoc]:
        found: dict[str, tuple[dict[int, str], dict[int, str], set[str | None]]] = {}
        for obj in self._objects_of_keys(source, keys, vectors=False):
            p = obj.properties
            hashes, chunk_hashes, tenants = found.setdefault(str(p["key"]), ({}, {}, set()))
            hashes[int(p["chunk"])] = str(p["content_hash"])
            chunk_hashes[int(p["chunk"])] = str(p.get("chunk_hash") or "")
            tenants.add(_tenant_of(p.get("tenant")))
        return {key: IndexedDoc(h, c, frozenset(t)) for key, (h, c, t) in found.items()}

    @guarded("read")
    def vectors(self, source: str, keys: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
        found: dict[tuple[str, str], np.ndarray] = {}
        for obj in self._objects_of_keys(source, keys, vectors=True):
            vector = obj.vector.get("default") if isinstance(obj.vector, dict) else obj.vector
            if vector is not None:
                key = (str(obj.properties["key"]), str(obj.properties.get("chunk_hash") or ""))
                found[key] = np.asarray(vector, dtype=np.float32)
        return found

    @guarded("read")
    def keys(self, source: str) -> set[str]:
        if not self.exists():
            return set()
        return {
            str(obj.properties["key"])
            for obj in self.collection.iterator(
                return_properties=["source", "key"], cache_size=1000
            )
            if obj.properties["source"] == source
        }

    def _filter(self, where: SearchFilter) -> Any:
        from weaviate.classes.query import Filter

        parts = []
        if where.sources:
            parts.append(Filter.by_property("source").contains_any(list(where.sources)))
        if where.tags:
            parts.append(Filter.by_property("meta_tags").contains_all(list(where.tags)))
        tenants = [PUBLIC_TENANT] + ([where.tenant] if where.tenant is not None else [])
        parts.append(Filter.by_property("tenant").contains_any(tenants))
        return Filter.all_of(parts)

    def _hit(self, obj: Any, score: float) -> SearchHit:
        p = obj.properties
        changed = p.get("changed_at")
        return SearchHit(
            id=str(obj.uuid),
            source=str(p["source"]),
            key=str(p["key"]),
            chunk=int(p["chunk"]),
            text=str(p["text"]),
            metadata=json.loads(p.get("metadata") or "{}"),
            score=score,
            changed_at=changed if isinstance(changed, dt.datetime) else None,
        )

    @guarded("search")
    def vector_search(self, vector: np.ndarray, k: int, where: SearchFilter) -> list[SearchHit]:
        from weaviate.classes.query import MetadataQuery

        if not self.exists():
            return []
        result = self.collection.query.near_vector(
            near_vector=[float(x) for x in vector],
            limit=k,
            filters=self._filter(where),
            return_metadata=MetadataQuery(distance=True),
            return_properties=RETURNED,
        )
        return [self._hit(o, 1.0 - float(o.metadata.distance or 0.0)) for o in result.objects]

    @guarded("search")
    def text_search(self, text: str, k: int, where: SearchFilter) -> list[SearchHit]:
        from weaviate.classes.query import MetadataQuery

        if not self.exists():
            return []
        result = self.collection.query.bm25(
            query=text,
            query_properties=["text"],
            limit=k,
            filters=self._filter(where),
            return_metadata=MetadataQuery(score=True),
            return_properties=RETURNED,
        )
        return [self._hit(o, float(o.metadata.score or 0.0)) for o in result.objects]

    @guarded("read")
    def stats(self, source: str) -> SourceStats:
        from weaviate.classes.query import Filter

        if not self.exists():
            return SourceStats(0, 0, [])
        by_source = Filter.by_property("source").equal(source)
        chunks = self.collection.aggregate.over_all(total_count=True, filters=by_source).total_count
        lags = []
        for obj in self.collection.iterator(
            return_properties=["source", "chunk", "changed_at", "indexed_at"], cache_size=1000
        ):
            p = obj.properties
            if p["source"] == source and p["chunk"] == 0:
                lags.append((p["indexed_at"] - p["changed_at"]).total_seconds())
        return SourceStats(len(lags), int(chunks or 0), lags)

    @guarded("read")
    def version(self) -> str:
        from weaviate.classes.query import Sort

        if not self.exists():
            return "empty"
        result = self.collection.query.fetch_objects(
            limit=1,
            sort=Sort.by_property("indexed_at", ascending=False),
            return_properties=["indexed_at"],
        )
        total = self.collection.aggregate.over_all(total_count=True).total_count
        if not result.objects:
            return "empty"
        latest = result.objects[0].properties["indexed_at"]
        return f"{total}@{latest.isoformat()}"

    def maintain(self) -> None:
        """Weaviate compacts and indexes on its own."""

    @guarded("read")
    def identity(self) -> str | None:
        """The collection's name while it exists (Weaviate keeps no id of its own)."""
        return self.name if self.exists() else None

    def drop_if_damaged(self) -> bool:
        """The server owns the collection's files: nothing here to drop."""
        return False

    def close(self) -> None:
        self.client.close()
