"""LanceDB backend (the embedded default): one table of chunks in a local folder.

Upserts are `merge_insert` on the chunk id, deletes are filters on (source, key), and
every write is one atomic Lance commit, so a crash leaves either the old or the new
version. Full-text search uses Lance's native inverted index on `text`; vector search
uses cosine distance, exact until the table reaches `ann.min_rows` chunks and through an
ANN index (IVF_HNSW_SQ by default) after that. Rows written after an index was built are
still searched (flat) until `optimize()` folds them in, so freshness never waits for an
index rebuild. Writers take a file lock, so syncs of different sources in different
processes never race on a commit.

Every Lance/Arrow failure leaves this module as ragtune's own one-line IndexStoreError
(a full disk says so; anything else is damage, with the rebuild command). The table
carries an id in its config, set when it is created, so a table deleted and created again
is told apart from the one a source was indexed into; `identity()` also checks that every
file the current version names is there, at its recorded size.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from filelock import FileLock

from ragtune.adapters.index.base import (
    ChunkRecord,
    IndexDamagedError,
    SearchFilter,
    SearchHit,
    SourceStats,
    dedupe_by_id,
    store_error,
)
from ragtune.config import IndexConfig
from ragtune.core.index_health import UNMARKED, missing_files_message
from ragtune.core.sync_plan import IndexedDoc
from ragtune.errors import IndexStoreError, RagtuneError

IN_LIST = 500
VECTOR_COLUMNS = ["id", "source", "key", "chunk", "text", "metadata", "changed_at"]
ID_KEY = "ragtune.index_id"  # table config entry: which physical index this is
CHECKED_FILES = ("manifest", "data file", "deletion file", "index file")
# what Lance, its Rust core and Arrow raise (OSError covers a full disk; ValueError covers
# ArrowInvalid); programming errors (TypeError, KeyError, ...) keep their traceback
STORE_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    RuntimeError,
    ValueError,
    pa.ArrowException,
)

Method = TypeVar("Method", bound=Callable[..., Any])


def guarded(action: str) -> Callable[[Method], Method]:
    """Turn a Lance failure inside the method into a one-line IndexStoreError."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def call(self: LanceIndex, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except RagtuneError:
                raise
            except STORE_FAILURES as exc:
                raise store_error(str(self.path), action, exc) from exc

        return call  # type: ignore[return-value]

    return decorate


def sql_literal(value: str) -> str:
    """A string as a SQL literal for a Lance filter (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def in_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(sql_literal(v) for v in values) + ")"


def chunk_schema(dimension: int) -> pa.Schema:
    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("chunk", pa.int32(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("chunk_hash", pa.string(), nullable=False),
            pa.field("changed_at", utc, nullable=False),
            pa.field("indexed_at", utc, nullable=False),
            pa.field("tenant", pa.string(), nullable=True),
            pa.field("metadata", pa.string(), nullable=False),
            pa.field("meta_tags", pa.list_(pa.string()), nullable=False),
        ]
    )


def _table_names(db: Any) -> list[str]:
    return list(db.list_tables().tables)


def filter_sql(where: SearchFilter) -> str:
    """The Lance SQL filter for a search: sources, metadata tags, tenant scope."""
    parts = []
    if where.sources:
        parts.append(f"source IN {in_list(list(where.sources))}")
    for tag in where.tags:
        parts.append(f"array_has(meta_tags, {sql_literal(tag)})")
    if where.tenant is None:
        parts.append("tenant IS NULL")
    else:
        parts.append(f"(tenant IS NULL OR tenant = {sql_literal(where.tenant)})")
    return " AND ".join(parts)


class LanceIndex:
    backend = "lancedb"

    def __init__(self, config: IndexConfig):
        self.config = config
        self.path = Path(config.path)
        self._db: Any = None
        self._table: Any = None
        self._writes = 0
        self._indexed: set[str] = set()

    # -- connection -----------------------------------------------------------------------

    def _connect(self, create: bool) -> Any:
        if self._db is None:
            if not create and not self.path.exists():
                return None
            os.environ.setdefault("LANCEDB_LOG", "error")
            import lancedb

            self.path.mkdir(parents=True, exist_ok=True)
            self._db = lancedb.connect(str(self.path), read_consistency_interval=dt.timedelta(0))
        return self._db

    @property
    def table(self) -> Any:
        """The chunk table, or None when nothing was ever written."""
        if self._table is None:
            try:
                db = self._connect(create=False)
                if db is None or self.config.table not in _table_names(db):
                    return None
                self._table = db.open_table(self.config.table)
            except STORE_FAILURES as exc:
                if self._first_write_in_progress():
                    return None  # a sync is creating the table: nothing to read yet
                raise store_error(str(self.path), "open", exc) from exc
        return self._table

    def _first_write_in_progress(self) -> bool:
        """The table's folder exists but holds no committed version yet (another process
        is writing its first one); a table with a version that cannot be opened is damage."""
        versions = self.path / f"{self.config.table}.lance" / "_versions"
        return not any(versions.glob("*.manifest"))

    def _write_lock(self) -> FileLock:
        self.path.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path / ".write.lock"))

    @guarded("write")
    def ensure(self, dimension: int) -> None:
        if self.table is not None:
            if self.table.schema != chunk_schema(self.table.schema.field("vector").type.list_size):
                raise IndexStoreError(
                    f"index at {self.path} was written by another ragtune version; remove the "
                    "folder (or set another index.path) and run `ragtune sync --full`"
                )
            held = self.table.schema.field("vector").type.list_size
            if held != dimension:
                raise IndexStoreError(
                    f"index at {self.path} holds {held}-dimensional vectors but the embedding "
                    f"model makes {dimension}; remove the folder or set another index.path"
                )
            return
        db = self._connect(create=True)
        with self._write_lock():
            if self.config.table in _table_names(db):
                self._table = db.open_table(self.config.table)
                return
            table = db.create_table(self.config.table, schema=chunk_schema(dimension))
            # makes concurrent merge_inserts of the same new ids conflict and retry, not duplicate
            table.set_unenforced_primary_key("id")
            table.to_lance().update_config({ID_KEY: uuid.uuid4().hex})
            self._table = table

    # -- writes ---------------------------------------------------------------------------

    @guarded("write")
    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        unique = dedupe_by_id(records)
        data = pa.table(
            {
                "id": [r.id for r in unique],
                "source": [r.source for r in unique],
                "key": [r.key for r in unique],
                "chunk": pa.array([r.chunk for r in unique], pa.int32()),
                "text": [r.text for r in unique],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.stack([r.vector for r in unique]).astype(np.float32).ravel()),
                    len(unique[0].vector),
                ),
                "content_hash": [r.content_hash for r in unique],
                "chunk_hash": [r.chunk_hash for r in unique],
                "changed_at": pa.array(
                    [r.changed_at for r in unique], pa.timestamp("us", tz="UTC")
                ),
                "indexed_at": pa.array(
                    [r.indexed_at for r in unique], pa.timestamp("us", tz="UTC")
                ),
                "tenant": pa.array([r.tenant for r in unique], pa.string()),
                "metadata": [r.metadata_json for r in unique],
                "meta_tags": pa.array([list(r.meta_tags) for r in unique], pa.list_(pa.string())),
            },
            schema=self.table.schema,
        )
        with self._write_lock():
            (
                self.table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
            if not self._has_index("text"):  # searchable by words from the first write on
                self._create_scalar_indexes()
        self._writes += 1

    def _create_scalar_indexes(self) -> None:
        from lancedb.index import FTS, BTree

        self.table.create_index("text", config=FTS(), replace=True)
        self.table.create_index("key", config=BTree(), replace=True)

    @guarded("write")
    def delete_keys(self, source: str, keys: Sequence[str]) -> None:
        if self.table is None or not keys:
            return
        unique = sorted(set(keys))
        with self._write_lock():
            for start in range(0, len(unique), IN_LIST):
                part = unique[start : start + IN_LIST]
                self.table.delete(f"source = {sql_literal(source)} AND key IN {in_list(part)}")
        self._writes += 1

    @guarded("write")
    def delete_surplus(self, source: str, first_surplus: Mapping[str, int]) -> None:
        if self.table is None or not first_surplus:
            return
        by_first: dict[int, list[str]] = {}
        for key, first in first_surplus.items():
            by_first.setdefault(first, []).append(key)
        conditions = [
            f"(key IN {in_list(sorted(keys))} AND chunk >= {int(first)})"
            for first, keys in sorted(by_first.items())
        ]
        with self._write_lock():
            for start in range(0, len(conditions), 50):
                either = " OR ".join(conditions[start : start + 50])
                self.table.delete(f"source = {sql_literal(source)} AND ({either})")
        self._writes += 1

    @guarded("write")
    def maintain(self) -> None:
        """Build the ANN index once the table is large enough; compact and fold new rows
        into the indexes every N writes, or sooner when many rows are still unindexed."""
        table = self.table
        if table is None:
            return
        indexed = {tuple(i.columns): i for i in table.list_indices()}
        with self._write_lock():
            if ("text",) not in indexed and table.count_rows() > 0:
                self._create_scalar_indexes()
            if ("vector",) not in indexed and table.count_rows() >= self.config.ann.min_rows:
                self.build_ann_index()
            if self._writes >= self.config.optimize_every or self._unindexed() >= (
                self.config.optimize_unindexed_rows
            ):
                table.optimize(cleanup_older_than=dt.timedelta(seconds=self.config.keep_versions_s))
                self._writes = 0

    def _unindexed(self) -> int:
        """Rows written since the full-text index last took them in (searched flat till then)."""
        if not self._has_index("text"):
            return 0
        stats = self.table.index_stats("text_idx")
        return int(stats.num_unindexed_rows) if stats is not None else 0

    @guarded("write")
    def build_ann_index(self) -> None:
        from lancedb.index import HnswSq, IvfPq

        rows = self.table.count_rows()
        partitions = max(1, rows // 100_000)
        if self.config.ann.index_type == "IVF_PQ":
            config: Any = IvfPq(distance_type="cosine", num_partitions=partitions)
        else:
            config = HnswSq(distance_type="cosine", num_partitions=partitions)
        self.table.create_index("vector", config=config, replace=True)

    # -- reads ----------------------------------------------------------------------------

    def _scan(self, where: str, columns: list[str]) -> pa.Table:
        return self.table.search().where(where).select(columns).limit(None).to_arrow()

    def _rows_of_keys(self, source: str, keys: Sequence[str], columns: list[str]) -> list[pa.Table]:
        unique = sorted(set(keys))
        return [
            self._scan(
                f"source = {sql_literal(source)} AND key IN {in_list(unique[start : start + IN_LIST])}",
                columns,
            )
            for start in range(0, len(unique), IN_LIST)
        ]

    @guarded("read")
    def ledger(self, source: str, keys: Sequence[str]) -> dict[str, IndexedDoc]:
        if self.table is None or not keys:
            return {}
        found: dict[str, tuple[dict[int, str], dict[int, str], set[str | None]]] = {}
        for rows in self._rows_of_keys(
            source, keys, ["key", "chunk", "content_hash", "chunk_hash", "tenant"]
        ):
            for key, chunk, digest, text_digest, tenant in zip(
                rows["key"].to_pylist(),
                rows["chunk"].to_pylist(),
                rows["content_hash"].to_pylist(),
                rows["chunk_hash"].to_pylist(),
                rows["tenant"].to_pylist(),
                strict=True,
            ):
                hashes, chunk_hashes, tenants = found.setdefault(key, ({}, {}, set()))
                hashes[chunk], chunk_hashes[chunk] = digest, text_digest
                tenants.add(tenant)
        return {key: IndexedDoc(h, c, frozenset(t)) for key, (h, c, t) in found.items()}

    @guarded("read")
    def vectors(self, source: str, keys: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
        if self.table is None or not keys:
            return {}
        found: dict[tuple[str, str], np.ndarray] = {}
        for rows in self._rows_of_keys(source, keys, ["key", "chunk_hash", "vector"]):
            dimension = rows.schema.field("vector").type.list_size
            flat = rows["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
            matrix = flat.reshape(-1, dimension).astype(np.float32)
            for i, (key, text_digest) in enumerate(
                zip(rows["key"].to_pylist(), rows["chunk_hash"].to_pylist(), strict=True)
            ):
                found[(key, text_digest)] = matrix[i]
        return found

    @guarded("read")
    def keys(self, source: str) -> set[str]:
        if self.table is None:
            return set()
        rows = self._scan(f"source = {sql_literal(source)}", ["key"])
        return set(rows["key"].to_pylist())

    @guarded("read")
    def entries(self, source: str) -> list[tuple[str, int, str]]:
        """Every (key, chunk, content_hash) of a source: the ledger, whole."""
        if self.table is None:
            return []
        rows = self._scan(f"source = {sql_literal(source)}", ["key", "chunk", "content_hash"])
        return list(
            zip(
                rows["key"].to_pylist(),
                rows["chunk"].to_pylist(),
                rows["content_hash"].to_pylist(),
                strict=True,
            )
        )

    def _hits(self, rows: pa.Table, score_column: str, convert: Any) -> list[SearchHit]:
        hits = []
        for row in rows.to_pylist():
            hits.append(
                SearchHit(
                    id=row["id"],
                    source=row["source"],
                    key=row["key"],
                    chunk=row["chunk"],
                    text=row["text"],
                    metadata=json.loads(row["metadata"] or "{}"),
                    score=convert(row[score_column]),
                    changed_at=row["changed_at"],
                )
            )
        return hits

    @guarded("search")
    def vector_search(self, vector: np.ndarray, k: int, where: SearchFilter) -> list[SearchHit]:
        if self.table is None:
            return []
        query = (
            self.table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
            .distance_type("cosine")
            .where(filter_sql(where), prefilter=True)
            .select([*VECTOR_COLUMNS, "_distance"])
            .limit(k)
        )
        if self._has_index("vector"):
            query = query.nprobes(self.config.ann.nprobes).refine_factor(
                self.config.ann.refine_factor
            )
        return self._hits(query.to_arrow(), "_distance", lambda d: 1.0 - float(d))

    @guarded("search")
    def text_search(self, text: str, k: int, where: SearchFilter) -> list[SearchHit]:
        if self.table is None or not self._has_index("text"):
            return []
        rows = (
            self.table.search(text, query_type="fts", fts_columns="text")
            .where(filter_sql(where), prefilter=True)
            .select([*VECTOR_COLUMNS, "_score"])
            .limit(k)
            .to_arrow()
        )
        return self._hits(rows, "_score", float)

    def _has_index(self, column: str) -> bool:
        """Whether the table has an index on `column` (indexes are never dropped: cached)."""
        if column in self._indexed:
            return True
        if any(tuple(i.columns) == (column,) for i in self.table.list_indices()):
            self._indexed.add(column)
            return True
        return False

    @guarded("read")
    def stats(self, source: str) -> SourceStats:
        if self.table is None:
            return SourceStats(0, 0, [])
        literal = sql_literal(source)
        chunks = self.table.count_rows(f"source = {literal}")
        firsts = self._scan(f"source = {literal} AND chunk = 0", ["changed_at", "indexed_at"])
        changed = firsts["changed_at"].to_pylist()
        indexed = firsts["indexed_at"].to_pylist()
        lags = [(i - c).total_seconds() for c, i in zip(changed, indexed, strict=True)]
        return SourceStats(len(lags), chunks, lags)

    @guarded("read")
    def version(self) -> str:
        return "empty" if self.table is None else str(self.table.version)

    # -- health ---------------------------------------------------------------------------

    @guarded("read")
    def identity(self) -> str | None:
        table = self.table
        if table is None:
            return None
        for _ in range(3):  # a writer's cleanup may remove an older version's files meanwhile
            dataset = table.to_lance()
            missing, total = self._missing_files(dataset)
            if not missing:
                return str(dataset.config().get(ID_KEY) or UNMARKED)
            if table.version == dataset.version:
                break
        raise IndexDamagedError(missing_files_message(str(self.path), missing, total))

    def _missing_files(self, dataset: Any) -> tuple[list[str], int]:
        """The files the dataset's version names that are gone or shorter than recorded
        (data files carry their size), and how many it names."""
        root = str(dataset.uri)
        if "://" in root and not root.startswith("file://"):
            return [], 0  # object stores: Lance's own reads report what is missing
        root = root.removeprefix("file://")
        sizes: dict[str, int | None] = {}
        for fragment in dataset.get_fragments():
            for data in fragment.metadata.files:
                sizes[f"data/{data.path}"] = data.file_size_bytes
        tracked = dataset.tracked_files(min_version=dataset.version).read_all()
        for path, kind in zip(
            tracked["path"].to_pylist(), tracked["type"].to_pylist(), strict=True
        ):
            if kind in CHECKED_FILES:
                sizes.setdefault(path, None)
        missing = []
        for path, size in sizes.items():
            try:
                held = os.stat(os.path.join(root, path)).st_size
            except FileNotFoundError:
                missing.append(path)
                continue
            if size is not None and held < size:
                missing.append(path)
        return missing, len(sizes)

    def drop_if_damaged(self) -> bool:
        try:
            self.identity()
            return False
        except IndexDamagedError:
            pass
        with self._write_lock():
            self.close()
            shutil.rmtree(self.path / f"{self.config.table}.lance", ignore_errors=True)
        return True

    def close(self) -> None:
        self._table = None
        self._db = None
        self._indexed = set()
