"""One source's sync, as named steps: capture -> load -> plan -> chunk -> embed -> write -> advance.

`SourceSync.run()` chains the steps for the CLI; the Prefect `refresh_index` flow wires
the same steps as tasks. The contract (DESIGN.md, "The sync contract"):

- capture names keys; each key is re-read from its table, which holds the truth;
- a document whose content hash is already indexed is neither embedded nor written;
- new chunks are written before surplus old chunks are removed;
- a position (changelog rows, cursor watermark) advances only after the index write is
  durable, and changelog rows are consumed exactly, never "all up to a number";
- a key is processed by one consumer at a time (a lock per source and partition).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from ragtune.adapters.changelog import Changelog, installed_or_fail
from ragtune.adapters.embeddings import Embedder
from ragtune.adapters.index.base import ChunkRecord, VectorIndex
from ragtune.adapters.quality import QualityGate
from ragtune.adapters.sources import SqlSource
from ragtune.adapters.state import RunCounts, StateStore
from ragtune.config import Params, SourceConfig
from ragtune.core.chunking import chunk_document, fingerprint
from ragtune.core.documents import (
    NULL_KEY,
    Document,
    RowSpec,
    UndecodableText,
    as_utc,
    document_from_row,
    is_soft_deleted,
    key_text,
    metadata_tags,
    row_problems,
)
from ragtune.core.ids import chunk_hash, chunk_id, partition_of
from ragtune.core.quality import batch_summary, change_rows
from ragtune.core.sync_plan import SyncPlan, plan_sync, surplus_chunks
from ragtune.errors import BusyError, ConfigError, DeletesHeldError, QualityGateError

GATE_WAIT_S = 10.0  # the layout gate is held for a moment only; wait at least this long
ProgressHook = Callable[[str, int, int | None], None]  # (source, docs done, total or None)


@dataclass
class Batch:
    """Keys to bring up to date, and how to advance the capture position afterwards."""

    kind: str  # "changes" | "rows" | "keys"
    keys: list[str]
    changed_at: dict[str, dt.datetime]
    rows: Mapping[str, Mapping[str, Any]] | None = None  # pre-read rows ("rows" batches)
    ack_ids: list[int] = field(default_factory=list)
    ack_keys: dict[int, str] = field(default_factory=dict)  # changelog row id -> its key
    advance: dict[str, Any] = field(default_factory=dict)  # state fields to save afterwards
    duplicates: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)  # same key text


@dataclass(frozen=True)
class PendingChunk:
    document: Document
    n: int
    text: str
    content_hash: str
    chunk_hash: str
    reusable: bool = False  # the index holds this key's chunk with this very text


@dataclass(frozen=True)
class Steps:
    """The callables one sync pass is made of; each takes the SourceSync first."""

    capture: Callable[..., Batch | None]
    plan: Callable[..., SyncPlan]
    validate: Callable[..., SyncPlan]
    chunk: Callable[..., list[PendingChunk]]
    embed: Callable[..., Embedded]
    write: Callable[..., RunCounts]
    advance: Callable[..., RunCounts]


@dataclass(frozen=True)
class Embedded:
    """One vector per pending chunk, and how many of them were reused, not computed."""

    vectors: np.ndarray
    reused: int = 0


@dataclass(frozen=True)
class Partition:
    index: int = 0
    count: int = 1

    def owns(self, key: str) -> bool:
        return partition_of(key, self.count) == self.index

    @property
    def label(self) -> str:
        return f"{self.index}-of-{self.count}"


def row_spec(config: SourceConfig) -> RowSpec:
    return RowSpec(
        key=config.key,
        text=tuple(config.text),
        metadata=tuple(config.metadata),
        deleted=config.deleted,
        tenant=config.tenant,
        updated_at=config.updated_at,
        format=config.format,
    )


class SourceSync:
    """Syncs one source (or one key partition of it) into the index."""

    def __init__(
        self,
        name: str,
        params: Params,
        source: SqlSource,
        index: VectorIndex,
        embedder: Embedder,
        state: StateStore,
        partition: Partition = Partition(),
        progress: ProgressHook | None = None,
        gate: QualityGate | None = None,
    ):
        self.name = name
        self.params = params
        self.config = params.source(name)
        self.source = source
        self.index = index
        self.embedder = embedder
        self.state = state
        self.partition = partition
        self.progress = progress
        self.gate = gate
        self.allow_mass_delete = False
        self.declared = source.declared_types()
        self._indexed: int | None = None
        self._window_base: int | None = None
        self._pass_started = time.time()
        self._held_deletes: set[str] = set()
        self._guard_summary: dict[str, Any] = {}
        self._chunk_cache: dict[str, tuple[Document, list[Any]]] = {}
        self._load_held: dict[str, object] = {}  # key -> its tenant, of rows held at load
        self.spec = row_spec(self.config)
        self.fingerprint = fingerprint(
            params.embeddings.model, params.chunking.max_tokens, params.chunking.overlap_tokens
        )
        self.changelog = (
            Changelog(source, params.workspace.path) if self.config.capture == "changelog" else None
        )
        if self.changelog is not None:
            installed_or_fail(self.changelog)
        if self.config.capture == "cursor" and partition.count > 1:
            raise ConfigError(f"source '{name}': capture: cursor cannot be split into partitions")
        self._batches: Iterator[Batch] | None = None
        self._resume: tuple[Any, ...] = ("full", None)  # where capture reads next
        self._seen: set[str] = set()  # keys a full scan found in the table
        self._full_started = 0.0
        self._full_watermark: Any = None
        self._caught_up_at: float | None = None
        self._done = 0
        self._total: int | None = None
        self._full = False

    # -- the steps ----------------------------------------------------------------------

    def start(self, full: bool = False) -> None:
        """Begin a pass: a full re-read when asked or owed, then the capture's changes."""
        saved = self.state.load(self.name)
        self._full = full or saved.needs_full
        from ragtune.index_health import check_before_pass

        check_before_pass(self, self._full)  # an index that lost chunks is never "current"
        self._resume = ("full", None) if self._full else ("capture", None)
        self._batches = self._batches_from(self._resume)
        self._caught_up_at = None
        self._done = 0
        self._total = None
        self._indexed = None
        self._window_base = None
        self._pass_started = time.time()
        self._held_deletes = set()
        self._guard_summary = {}
        self._chunk_cache = {}
        if self.progress is not None:
            if self._full:
                self._total = self.source.count()
            elif self.changelog is not None:
                self._total = self.changelog.count()

    def capture(self) -> Batch | None:
        """The next batch of changed keys, or None when the source is caught up.

        Restartable: a read that fails leaves the position where the last good batch left
        it, so calling capture again (a Prefect retry) re-reads the same page."""
        assert self._batches is not None, "call start() first"
        try:
            return next(self._batches, None)
        except BaseException:
            self._batches = self._batches_from(self._resume)
            raise

    def load(self, batch: Batch) -> tuple[list[Document], list[str]]:
        """Re-read the batch's keys: documents for present rows, keys whose rows are gone.

        Changelog keys are re-read by the database's own key comparison against the queued
        values (never a text round trip). A row that cannot become a document (NULL key,
        undecodable text) is quarantined with its reason, and the rest go on; its earlier
        indexed version, if any, stays.
        """
        rows = batch.rows
        if rows is None and batch.kind == "changes" and self.changelog is not None:
            rows = self.changelog.read_rows(batch.ack_ids)
        elif rows is None:
            rows = self.source.read_rows([k for k in batch.keys if k != NULL_KEY])
        now = dt.datetime.now(dt.UTC)
        held: dict[str, list[str]] = {}
        self._load_held = {}
        present: list[Document] = []
        for key, duplicate in batch.duplicates:
            if problems := row_problems(self.spec, duplicate):
                held[key] = problems
            elif (d := document_from_row(self.name, self.spec, duplicate, now)) is not None:
                present.append(d)
        absent: list[str] = []
        for key in batch.keys:
            if key == NULL_KEY:
                self._hold_null_keys()
                continue
            row = rows.get(key)
            document = None
            if (
                row is not None
                and not is_soft_deleted_row(self.spec, row)
                and (problems := row_problems(self.spec, row))
            ):
                held[key] = problems
                self._load_held[key] = row_tenant(self.spec, row)
                continue
            if row is not None:
                document = document_from_row(
                    self.name, self.spec, row, batch.changed_at.get(key, now)
                )
            if document is None:
                absent.append(key)
            else:
                present.append(document)
        self.state.quarantine(self.name, held)
        return present, absent

    def _hold_null_keys(self) -> None:
        """Quarantine the source's NULL-key rows under NULL_KEY, or release it when none."""
        nulls = self.source.null_keys()
        if nulls:
            reason = (
                f"{nulls} row(s) have a NULL key column '{self.config.key}': a row needs a key "
                "to be indexed"
            )
            self.state.quarantine(self.name, {NULL_KEY: [reason]})
        else:
            self.state.release(self.name, [NULL_KEY])

    def plan(self, present: Sequence[Document], absent: Sequence[str]) -> SyncPlan:
        """Compare with the index's ledger: what to upsert, delete, leave alone."""
        keys = [d.key for d in present] + list(absent)
        ledger = self.index.ledger(self.name, keys) if keys else {}
        return plan_sync(present, absent, ledger, self.fingerprint)

    def validate(self, plan: SyncPlan) -> SyncPlan:
        """The quality gate. A row failing a row-level expectation, or one that would make
        more than `quality.max_chunks_per_document` chunks, is quarantined: its indexed
        version stays, unless the update changed who may read it (tenant), and then that
        version is withdrawn. A failed batch-level expectation (row count) refuses the
        batch: QualityGateError, nothing written, position not advanced. The mass-delete
        guard, counting deletes over `quality.mass_delete_window_s`, holds back only the
        deletes: inserts and updates go on, the held deletes stay queued, and the pass
        ends with a QualityGateError naming them."""
        quality = self.params.quality
        upserts, deletes = list(plan.upserts), list(plan.deletes)
        blank = [d for d in upserts if not d.text.strip()]
        if blank and (not quality.enabled or quality.empty_text == "delete"):
            upserts = [d for d in upserts if d.text.strip()]
            deletes += [d.key for d in blank if d.key in plan.ledger and d.key not in deletes]
        held: dict[str, list[str]] = {}
        held_deletes: list[str] = []
        if quality.enabled:
            assert self.gate is not None, "quality.enabled needs a QualityGate"
            rows = change_rows(((d.key, d.text, d.raw_metadata) for d in upserts), self.declared)
            summary = batch_summary(
                rows=len(upserts) + len(deletes) + len(plan.unchanged),
                deletes=len(deletes),
                deleted_before=self._deletes_in_window(),
                indexed=self._guard_base(),
            )
            report = self.gate.validate_changes(self.name, rows, summary, self.declared)
            guard = [f for f in report.batch if "guard" in f.reason]
            refusals = [f for f in report.batch if "guard" not in f.reason]
            if refusals:
                self._build_docs(force=True)
                raise QualityGateError(
                    f"source '{self.name}': batch refused by the quality gate: "
                    f"{report.describe_batch()} ({summary['deletes']} deletes, "
                    f"{summary['indexed_documents']} indexed documents, {summary['rows']} rows); "
                    "nothing was written"
                    + (
                        "; raise quality.batch_max_rows or lower sync.batch_size"
                        if any(f.column == "rows" for f in refusals)
                        else ""
                    )
                )
            if guard and not self.allow_mass_delete:
                held_deletes, deletes = deletes, []
                self._held_deletes.update(held_deletes)
                self._guard_summary = {**summary, "detail": report.describe_batch()}
            held = dict(report.rows)
            held.update(self._over_budget([d for d in upserts if d.key not in held]))
            upserts = [d for d in upserts if d.key not in held]
            deletes += [k for k in rescoped(plan, held, self.spec) if k not in deletes]
            deletes += [k for k in self._rescoped_at_load() if k not in deletes]
            self.state.quarantine(self.name, held)
        passed = [d.key for d in upserts] + deletes + list(plan.unchanged)
        passed += [k for k in plan.hashes if k not in held and k not in passed]
        self.state.release(self.name, sorted(set(passed) - set(held) - set(self._load_held)))
        return replace(
            plan,
            upserts=tuple(upserts),
            deletes=tuple(deletes),
            quarantined=tuple(sorted(held)),
            held_deletes=tuple(held_deletes),
        )

    def _rescoped_at_load(self) -> list[str]:
        """Rows quarantined as they were read (undecodable text) whose indexed version
        carries another tenant than the row now names, or whose tenant cannot be read."""
        if not self._load_held or not self.spec.tenant:
            return []
        ledger = self.index.ledger(self.name, sorted(self._load_held))
        return [
            key
            for key, tenant in sorted(self._load_held.items())
            if key in ledger and (tenant is UNREADABLE or ledger[key].tenants != {tenant})
        ]

    def _over_budget(self, documents: Sequence[Document]) -> dict[str, list[str]]:
        """Documents that would make more chunks than the per-document budget."""
        budget = self.params.quality.max_chunks_per_document
        over: dict[str, list[str]] = {}
        for document in documents:
            made = len(self._pieces(document))
            if made > budget:
                over[document.key] = [
                    f"would make {made} chunks, over quality.max_chunks_per_document ({budget}); "
                    "split the row or raise the budget"
                ]
        return over

    def _indexed_documents(self) -> int:
        if self._indexed is None:
            self._indexed = self.index.stats(self.name).documents
        return self._indexed

    def _window_start(self) -> float:
        return min(self._pass_started, time.time() - self.params.quality.mass_delete_window_s)

    def _deletes_in_window(self) -> int:
        """Documents this source deleted within the guard's window (this pass included)."""
        return self.state.deletes_since(self.name, self._window_start())

    def _guard_base(self) -> int:
        """About how many documents the source held when the window began: the guard's
        denominator, so deletes spread over many passes add up."""
        if self._window_base is None:
            self._window_base = self._indexed_documents() + self._deletes_in_window()
        return self._window_base

    def _build_docs(self, force: bool = False) -> None:
        if self.gate is not None:
            self.gate.build_docs(force=force)

    def chunk(self, plan: SyncPlan) -> list[PendingChunk]:
        """Token-aware chunks of every document to upsert."""
        if not plan.upserts:
            return []
        pending: list[PendingChunk] = []
        for document in plan.upserts:
            digest = plan.hashes[document.key]
            held = plan.ledger.get(document.key)
            known = set(held.chunk_hashes.values()) if held is not None else set()
            for piece in self._pieces(document):
                text_digest = chunk_hash(self.fingerprint, piece.text)
                pending.append(
                    PendingChunk(
                        document, piece.n, piece.text, digest, text_digest, text_digest in known
                    )
                )
        self._chunk_cache.clear()
        return pending

    def _pieces(self, document: Document) -> list[Any]:
        """The document's chunks, made once per batch (the budget check made them first)."""
        cached = self._chunk_cache.get(document.key)
        if cached is not None and cached[0] is document:
            return cached[1]
        pieces = chunk_document(
            document.title,
            document.body,
            self.embedder.tokenizer,
            min(self.params.chunking.max_tokens, self.embedder.max_tokens),
            self.params.chunking.overlap_tokens,
            document.format,
        )
        self._chunk_cache[document.key] = (document, pieces)
        return pieces

    def embed(self, chunks: Sequence[PendingChunk]) -> Embedded:
        """Vectors for the chunks: stored ones where a chunk's text is already indexed
        under its key (an edit re-embeds only the chunks it touched), new ones otherwise."""
        reusable_keys = sorted({c.document.key for c in chunks if c.reusable})
        stored = self.index.vectors(self.name, reusable_keys) if reusable_keys else {}
        vectors: list[np.ndarray | None] = [
            stored.get((c.document.key, c.chunk_hash)) if c.reusable else None for c in chunks
        ]
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            encoded = self.embedder.encode([chunks[i].text for i in missing])
            for row, i in enumerate(missing):
                vectors[i] = encoded[row]
        if not chunks:
            return Embedded(np.zeros((0, 0), dtype=np.float32))
        matrix = np.stack([v for v in vectors if v is not None]).astype(np.float32)
        return Embedded(matrix, reused=len(chunks) - len(missing))

    def write(
        self, plan: SyncPlan, chunks: Sequence[PendingChunk], embedded: Embedded
    ) -> RunCounts:
        """Upsert new chunks, then drop surplus old ones, then delete vanished documents."""
        vectors, reused = embedded.vectors, embedded.reused
        counts = RunCounts(
            upserted_docs=len(plan.upserts),
            deleted_docs=len(plan.deletes),
            unchanged_docs=len(plan.unchanged),
            embedded_chunks=len(chunks) - reused,
            reused_chunks=reused,
        )
        indexed_at = dt.datetime.now(dt.UTC)
        if chunks:
            self.index.ensure(vectors.shape[1])
            records = [
                ChunkRecord(
                    id=chunk_id(self.name, c.document.key, c.n),
                    source=self.name,
                    key=c.document.key,
                    chunk=c.n,
                    text=c.text,
                    vector=vectors[i],
                    content_hash=c.content_hash,
                    chunk_hash=c.chunk_hash,
                    changed_at=c.document.changed_at,
                    indexed_at=indexed_at,
                    tenant=c.document.tenant,
                    metadata=c.document.metadata,
                    meta_tags=metadata_tags(c.document.metadata),
                )
                for i, c in enumerate(chunks)
            ]
            self.index.upsert(records)
            counts.written_chunks = len(records)
            counts.index_writes += 1
            counts.lags_s = [
                (indexed_at - c.document.changed_at).total_seconds() for c in chunks if c.n == 0
            ]
        per_key: dict[str, int] = {}
        for c in chunks:
            per_key[c.document.key] = max(per_key.get(c.document.key, 0), c.n + 1)
        surplus = surplus_chunks(per_key, plan.ledger)
        if surplus:
            self.index.delete_surplus(self.name, surplus)
            counts.index_writes += 1
        if plan.deletes:
            self.index.delete_keys(self.name, list(plan.deletes))
            counts.index_writes += 1
            self.state.record_deletes(self.name, len(plan.deletes), self.allow_mass_delete)
        counts.held_deletes = len(plan.held_deletes)
        if counts.index_writes:
            self.index.maintain()
        return counts

    def advance(self, batch: Batch) -> RunCounts:
        """Consume exactly this batch's changelog rows; save the new capture position."""
        counts = RunCounts()
        held = self._held_deletes
        ack_ids = [i for i in batch.ack_ids if batch.ack_keys.get(i) not in held]
        if ack_ids and self.changelog is not None:
            if self.changelog.ack(ack_ids):
                counts.acked = len(ack_ids)
            else:
                counts.ack_deferred = len(ack_ids)
        if batch.advance and not any(key in held for key in batch.keys):
            saved = self.state.load(self.name)
            for name, value in batch.advance.items():
                setattr(saved, name, value)
            self.state.save(saved)
        return counts

    def finish(self) -> None:
        """Record up to when the index is known current (the last empty capture read);
        render the Data Docs of this pass's validations."""
        self._build_docs()
        if self._caught_up_at is not None and not self._held_deletes:
            saved = self.state.load(self.name)
            saved.as_of = self._caught_up_at
            self.state.save(saved)

    # -- the whole pass -------------------------------------------------------------------

    def run(
        self,
        full: bool = False,
        stop: threading.Event | None = None,
        steps: Steps | None = None,
        allow_mass_delete: bool = False,
    ) -> RunCounts:
        """One pass under the source lock: every batch until caught up (or asked to stop).

        `steps` replaces the plain step calls, e.g. by Prefect tasks with retries; the
        sequence itself lives only here.
        """
        step = steps or DIRECT_STEPS
        self.allow_mass_delete = allow_mass_delete
        with self.lock():
            run_id = self.state.start_run(self.name, "full" if full else "sync")
            total = RunCounts()
            try:
                self.start(full)
                while (batch := step.capture(self)) is not None:
                    plan = step.validate(self, step.plan(self, batch))
                    chunks = step.chunk(self, plan)
                    embedded = step.embed(self, chunks)
                    counts = step.write(self, plan, chunks, embedded)
                    counts.add(step.advance(self, batch))
                    counts.batches, counts.changes = 1, len(batch.keys)
                    total.add(counts)
                    self._report(len(batch.keys))
                    if stop is not None and stop.is_set():
                        break
                self.finish()
                if self._held_deletes:
                    raise self._guard_error(total)
            except BaseException as exc:
                self.state.finish_run(run_id, "failed", total, f"{type(exc).__name__}: {exc}")
                self._build_docs(force=True)
                raise
            self.state.finish_run(run_id, "completed", total)
            return total

    def _guard_error(self, counts: RunCounts) -> DeletesHeldError:
        summary = self._guard_summary
        keys = sorted(self._held_deletes)
        shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
        return DeletesHeldError(
            f"source '{self.name}': {len(keys)} deletes held back by the quality gate "
            f"({shown}): {summary.get('detail', 'mass-delete guard')} (deletes within "
            f"quality.mass_delete_window_s against about {summary.get('indexed_documents', 0)}"
            " indexed documents); inserts and updates were applied, the deletes stay queued: "
            "rerun with --allow-mass-delete if intended",
            counts,
        )

    def review(self, batch: Batch) -> SyncPlan:
        """Re-read the batch's rows and compare them with the index (load + plan)."""
        present, absent = self.load(batch)
        return self.plan(present, absent)

    def _report(self, keys: int) -> None:
        self._done += keys
        if self.progress is not None:
            self.progress(self.name, self._done, self._total)

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold this source's partition lock, and its partition layout shared with the other
        partitions of the same layout; BusyError if another process holds the partition, or
        runs the source under another layout (`sync` and `sync --partition 2/16` would
        process the same key at once)."""
        folder = self.params.workspace.path / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        wait = self.params.sync.lock_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + wait
        with source_layout(folder, self.name, self.partition.count, deadline):
            lock = FileLock(str(folder / f"{self.name}.{self.partition.label}.lock"))
            try:
                lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            except Timeout:
                raise BusyError(
                    f"source '{self.name}' (partition {self.partition.index}/"
                    f"{self.partition.count}) is being synced by another process; "
                    "wait for it, or raise sync.lock_timeout_s"
                ) from None
            try:
                yield
            finally:
                lock.release()

    # -- capture ------------------------------------------------------------------------

    def _batches_from(self, position: tuple[Any, ...]) -> Iterator[Batch]:
        """The batches of the rest of the pass, from a capture position. Each generator
        sets `self._resume` to the position after the batch it is about to yield."""
        phase, after = position
        if phase == "full":
            yield from self._full_batches(after)
            phase, after = "orphans", None
        if phase == "orphans":
            yield from self._orphan_batches()
            phase, after = "capture", None
        if self.changelog is not None:
            yield from self._changelog_batches(after)
        else:  # the cursor restarts from the saved watermark: re-reading a page is harmless
            yield from self._cursor_batches()

    def _full_batches(self, after: Any = None) -> Iterator[Batch]:
        """Every row in key order (after key value `after`, when resuming)."""
        if after is None:
            self._seen = set()
            self._full_started = time.time()
            self._full_watermark = (
                _stamp(self.source.max_updated_at()) if self.config.capture == "cursor" else None
            )
            if self.partition.owns(NULL_KEY) and (
                self.source.null_keys()
                or any(q["key"] == NULL_KEY for q in self.state.quarantined(self.name))
            ):  # the scan skips NULL keys; load quarantines (or releases) them as one
                yield Batch("keys", [NULL_KEY], {})
        seen = self._seen
        for page in self.source.scan(self.params.sync.batch_size, after):
            now = dt.datetime.now(dt.UTC)  # a backfilled row is "changed" when it is read
            rows: dict[str, Mapping[str, Any]] = {}
            duplicates: list[tuple[str, Mapping[str, Any]]] = []
            for row in page:
                key = str(self._key_of(row))
                if not self.partition.owns(key):
                    continue
                if key in rows:  # e.g. 1 and '1' in an untyped SQLite key column
                    duplicates.append((key, row))
                else:
                    rows[key] = row
            seen.update(rows)
            self._resume = ("full", page[-1][self.config.key])
            if rows:
                yield Batch(
                    "rows", list(rows), dict.fromkeys(rows, now), rows=rows, duplicates=duplicates
                )

    def _orphan_batches(self) -> Iterator[Batch]:
        """After a full scan: the keys the index holds that the table does not."""
        orphans = sorted(
            k for k in self.index.keys(self.name) - self._seen if self.partition.owns(k)
        )
        advance: dict[str, Any] = {"needs_full": False, "reconciled_at": self._full_started}
        if self._full_watermark is not None:
            advance["watermark"] = self._full_watermark
        for start in range(0, max(len(orphans), 1), self.params.sync.batch_size):
            part = orphans[start : start + self.params.sync.batch_size]
            last = start + self.params.sync.batch_size >= len(orphans)
            self._resume = ("capture", None) if last else ("orphans", None)
            yield Batch("keys", part, {}, advance=advance if last else {})

    def _changelog_batches(self, after: int | None = None) -> Iterator[Batch]:
        assert self.changelog is not None
        while True:
            read_at = time.time()
            changes = self.changelog.pending(self.params.sync.batch_size, after)
            if not changes:
                self._caught_up_at = read_at
                return
            after = changes[-1].id
            self._resume = ("capture", after)
            mine = [c for c in changes if self.partition.owns(c.key)]
            if not mine:
                continue
            changed_at: dict[str, dt.datetime] = {}
            for change in mine:
                changed_at[change.key] = max(
                    change.changed_at, changed_at.get(change.key, change.changed_at)
                )
            yield Batch(
                "changes",
                list(changed_at),
                changed_at,
                ack_ids=[c.id for c in mine],
                ack_keys={c.id: c.key for c in mine},
            )

    def _cursor_batches(self) -> Iterator[Batch]:
        """Rows with updated_at >= watermark - lookback, by (updated_at, key) pages."""
        saved = self.state.load(self.name)
        low = _minus_seconds(saved.watermark, self.config.lookback_s)
        after: tuple[Any, Any] | None = None
        watermark = saved.watermark
        assert self.config.updated_at
        while True:
            read_at = time.time()
            page = self.source.changed_since(low, after, self.params.sync.batch_size)
            if not page:
                self._caught_up_at = read_at
                break
            rows = {str(self._key_of(r)): r for r in page}
            stamps = [s for r in page if (s := _stamp(r[self.config.updated_at])) is not None]
            if stamps:
                watermark = max([*stamps, watermark]) if watermark is not None else max(stamps)
            now = dt.datetime.now(dt.UTC)
            changed_at = {k: _as_time(r[self.config.updated_at]) or now for k, r in rows.items()}
            last = page[-1]
            after = (last[self.config.updated_at], last[self.config.key])
            yield Batch("rows", list(rows), changed_at, rows=rows, advance={"watermark": watermark})
        yield from self._reconcile_batches(saved.reconciled_at)

    def _reconcile_batches(self, reconciled_at: float | None) -> Iterator[Batch]:
        """Cursor mode cannot see hard deletes: compare key sets now and then."""
        if (
            reconciled_at is not None
            and time.time() - reconciled_at < self.config.reconcile_every_s
        ):
            return
        started = time.time()
        present = self.source.present_keys()
        indexed = self.index.keys(self.name)
        differing = sorted((indexed - present) | (present - indexed))
        size = self.params.sync.batch_size
        for start in range(0, max(len(differing), 1), size):
            last = start + size >= len(differing)
            yield Batch(
                "keys",
                differing[start : start + size],
                {},
                advance={"reconciled_at": started} if last else {},
            )

    def _key_of(self, row: Mapping[str, Any]) -> str:
        from ragtune.core.documents import key_text

        return key_text(row[self.config.key])


@contextlib.contextmanager
def source_layout(folder: Path, name: str, count: int, deadline: float) -> Iterator[None]:
    """Share the source's layout lock of `count` partitions (flock LOCK_SH on
    `<name>.layout-<count>`) while no other layout of the source is held. The check and
    the taking happen under a gate lock, so two layouts never both get in; a process that
    dies releases its locks with it."""
    own_path = folder / f"{name}.layout-{count}"
    gate = FileLock(str(folder / f"{name}.layout.gate"))
    own = own_path.open("a")
    try:
        while True:
            try:  # the gate is held only for a check: wait for it even at lock_timeout_s 0
                gate.acquire(timeout=max(GATE_WAIT_S, deadline - time.monotonic()))
            except Timeout:
                other = None
            else:
                try:
                    other = _layout_in_use(folder, name, exclude=own_path)
                    if other is None:
                        fcntl.flock(own, fcntl.LOCK_SH)
                        break
                finally:
                    gate.release()
            if time.monotonic() >= deadline:
                layout = f"as {other} partitions" if other else "under another layout"
                raise BusyError(
                    f"source '{name}' is being synced {layout} by another process; one "
                    f"consumer per key: use the same --partition I/{other or 'N'} everywhere, "
                    "or wait for it (sync.lock_timeout_s)"
                )
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        yield
    finally:
        own.close()  # releases the shared lock


def _layout_in_use(folder: Path, name: str, exclude: Path) -> int | None:
    """The partition count of another layout some process holds, or None."""
    for path in sorted(folder.glob(f"{name}.layout-*")):
        if path == exclude:
            continue
        with path.open("a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return int(path.name.rsplit("-", 1)[1])
            fcntl.flock(probe, fcntl.LOCK_UN)
    return None


UNREADABLE = object()  # a tenant value that could not be decoded


def is_soft_deleted_row(spec: RowSpec, row: Mapping[str, Any]) -> bool:
    """The row's soft-delete flag is set (a deleted row is a delete whatever its text)."""
    return spec.deleted is not None and is_soft_deleted(row.get(spec.deleted))


def row_tenant(spec: RowSpec, row: Mapping[str, Any]) -> object:
    """The tenant a row names, as documents carry it; UNREADABLE when undecodable."""
    value = row.get(spec.tenant) if spec.tenant else None
    if isinstance(value, UndecodableText):
        return UNREADABLE
    return None if value is None else key_text(value)


def rescoped(plan: SyncPlan, held: Mapping[str, Any], spec: RowSpec) -> list[str]:
    """Quarantined updates whose indexed version carries another access scope (tenant)
    than the row now has: the source no longer allows that scope, so the indexed version
    must go. An index that cannot say which scope it holds counts as changed."""
    tenants = {d.key: d.tenant for d in plan.upserts}
    withdraw = []
    for key in sorted(held):
        indexed = plan.ledger.get(key)
        if key not in tenants or indexed is None:
            continue
        if indexed.tenants is None:
            if spec.tenant:
                withdraw.append(key)
        elif indexed.tenants != {tenants[key]}:
            withdraw.append(key)
    return withdraw


def _stamp(value: Any) -> Any:
    """An updated_at value usable as a watermark, or None (NULL or malformed)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if _as_time(value) is not None else None
    return value


def _as_time(value: Any) -> dt.datetime | None:
    try:
        return as_utc(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _minus_seconds(value: Any, seconds: float) -> Any:
    if value is None:
        return None
    if isinstance(value, str):  # a timestamp as SQLite stores it
        parsed = dt.datetime.fromisoformat(value.strip())
        return parsed - dt.timedelta(seconds=seconds)
    if isinstance(value, dt.datetime):
        return value - dt.timedelta(seconds=seconds)
    if isinstance(value, dt.date):
        return value - dt.timedelta(days=int(seconds // 86400) + 1)
    return value - type(value)(seconds) if isinstance(value, int) else value - seconds


DIRECT_STEPS = Steps(
    capture=SourceSync.capture,
    plan=SourceSync.review,
    validate=SourceSync.validate,
    chunk=SourceSync.chunk,
    embed=SourceSync.embed,
    write=SourceSync.write,
    advance=SourceSync.advance,
)
