"""Sync settings exercised, not only configured: `--partition I/N` consumers running at once,
the per-source lock and `sync.lock_timeout_s`, cursor capture at its real lookback and
reconciliation period, `sync --full` after a chunking change, blank text under each
`quality` setting, `quality.mass_delete_min_documents` and `quality.batch_max_rows`, and
`status` naming model versions trained on since-deleted labelled rows.

All on SQLite (the rules live in the engine-independent sync). Each test writes its own
params: the real defaults where the test is about them (`lookback_s` 300,
`reconcile_every_s` 3600), not the test helper's 60/0. The index is checked against the
source rows themselves (`assert_index_holds_rows`), and, where the chunk count is the
point, against what the chunker makes (`assert_index_matches`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.sources import SqlSource
from ragtune.adapters.state import StateStore
from ragtune.config import load_params
from ragtune.errors import BusyError, QualityGateError
from ragtune.sync import DIRECT_STEPS, Partition, SourceSync
from ragtune.workspace import open_syncs
from tests.integration.test_cli import run_cli
from tests.support import (
    Database,
    assert_index_holds_rows,
    assert_index_matches,
    create_documents,
    index_chunks,
    indexed_keys,
)
from tests.support import run_sync as sync

NO_GATE = "quality:\n  enabled: false\n"
BASE = dt.datetime(2024, 5, 1, 12, 0, 0)  # updated_at of the seeded rows (naive UTC)


def write_settings(
    workspace: Path,
    url: str,
    capture: str = "changelog",
    source: str = "",
    sections: str = "",
    batch_size: int = 64,
) -> Path:
    """A params file with only what the test names; everything else at its default."""
    workspace.mkdir(parents=True, exist_ok=True)
    path = workspace / "params.yaml"
    source_lines = "".join(f"    {line}\n" for line in source.splitlines() if line.strip())
    path.write_text(
        f"""
sources:
  docs:
    url: "{url}"
    table: documents
    key: id
    text: [title, body]
    metadata: [section]
    updated_at: updated_at
    deleted: deleted
    tenant: tenant
    format: text
    capture: {capture}
{source_lines}sync:
  batch_size: {batch_size}
{sections}
"""
    )
    return path


def body_of(i: int, paragraphs: int | None = None, version: int = 0) -> str:
    count = paragraphs if paragraphs is not None else i % 4 + 1
    return "\n\n".join(
        f"Paragraph {p} of document {i} (version {version}) explains topic {i % 7} plainly."
        for p in range(count)
    )


def row(i: int, **values: Any) -> dict[str, Any]:
    out = {
        "id": i,
        "title": f"Document {i}",
        "body": body_of(i),
        "section": f"s{i % 3}",
        "tenant": None,
        "deleted": 0,
        "updated_at": BASE + dt.timedelta(seconds=i),
    }
    out.update(values)
    return out


def seed(db: Database, rows: list[dict[str, Any]]) -> sa.Table:
    table = create_documents(db)
    if rows:
        with db.engine.begin() as c:
            c.execute(table.insert(), rows)
    return table


def install(params: Any) -> None:
    source = SqlSource.open("docs", params.sources["docs"])
    try:
        Changelog(source, params.workspace.path).install()
    finally:
        source.close()


def pending(params: Any) -> int:
    source = SqlSource.open("docs", params.sources["docs"])
    try:
        return Changelog(source, params.workspace.path).count()
    finally:
        source.close()


def consumer(params: Any, embedder: Any, partition: Partition = Partition()) -> SourceSync:
    (one,) = open_syncs(params, partition=partition, embedder=embedder)
    return one


def source_keys(db: Database) -> set[str]:
    """Present, not soft-deleted rows, read with sqlite3 alone."""
    assert db.path is not None
    with sqlite3.connect(db.path) as c:
        return {str(k) for (k,) in c.execute("SELECT id FROM documents WHERE deleted = 0")}


# -- 1. two partition consumers at once ---------------------------------------------------


def recording_steps(seen: list[str], meet: Callable[[], None]) -> Any:
    """The plain steps, recording every key a consumer captures; after its first batch
    is written the consumer waits for the other one (both are mid-pass at once)."""
    met = threading.Event()

    def capture(one: SourceSync) -> Any:
        batch = DIRECT_STEPS.capture(one)
        if batch is not None:
            seen.extend(batch.keys)
        return batch

    def advance(one: SourceSync, batch: Any) -> Any:
        counts = DIRECT_STEPS.advance(one, batch)
        if not met.is_set():
            met.set()
            meet()
        return counts

    return replace(DIRECT_STEPS, capture=capture, advance=advance)


class SerialEmbedder:
    """The shared embedder with its calls serialised. Partition consumers are separate
    processes in use, each with its own model; these threads share one loaded model,
    whose Hugging Face tokenizer is not safe to call from two threads at once."""

    def __init__(self, embedder: Any, lock: threading.Lock):
        self._embedder, self._lock = embedder, lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._embedder.encode(*args, **kwargs)

    @property
    def tokenizer(self) -> Any:
        return SerialTokenizer(self._embedder.tokenizer, self._lock)


class SerialTokenizer:
    def __init__(self, tokenizer: Any, lock: threading.Lock):
        self._tokenizer, self._lock = tokenizer, lock

    def count(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer.count(*args, **kwargs)

    def windows(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer.windows(*args, **kwargs)


def run_partitions(params: Any, embedder: Any) -> tuple[list[Any], list[list[str]]]:
    """`sync --partition 0/2` and `1/2` in two threads at the same time."""
    embedder = SerialEmbedder(embedder, threading.Lock())
    barrier = threading.Barrier(2, timeout=20)  # < lock_timeout_s: exclusion shows as an error
    seen: list[list[str]] = [[], []]
    counts: list[Any] = [None, None]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        one = consumer(params, embedder, Partition(i, 2))
        try:
            counts[i] = one.run(steps=recording_steps(seen[i], barrier.wait))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            barrier.abort()
        finally:
            one.source.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a partition consumer hung"
    assert not errors, f"a partition consumer failed: {errors[0]!r}"
    return counts, seen


def test_two_partition_consumers_at_once_converge_on_the_source_rows(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    table = seed(sqlite_db, [])
    path = write_settings(tmp_path / "ws", sqlite_db.url, sections=NO_GATE, batch_size=8)
    # lock_timeout_s 30: the start-up race at the default 0 has its own test below
    params = load_params(path, overrides={"sync": {"lock_timeout_s": 30}})
    install(params)
    with sqlite_db.engine.begin() as c:  # every row reaches the consumers through the queue
        c.execute(table.insert(), [row(i) for i in range(60)])

    counts, seen = run_partitions(params, embedder)
    all_keys = {str(i) for i in range(60)}
    assert set(seen[0]).isdisjoint(seen[1]), "a key was processed by both consumers"
    assert set(seen[0]) | set(seen[1]) == all_keys
    assert seen[0] and seen[1], "one consumer did all the work"
    assert counts[0].upserted_docs == len(set(seen[0]))
    assert counts[1].upserted_docs == len(set(seen[1]))
    assert counts[0].upserted_docs + counts[1].upserted_docs == 60
    assert counts[0].acked + counts[1].acked == 60
    assert pending(params) == 0
    assert indexed_keys(params) == source_keys(sqlite_db) == all_keys
    assert_index_holds_rows(sqlite_db, params, embedder)

    updated, hard, soft, new = [3, 10, 17, 24, 31, 44], [5, 12, 40, 41], [7, 50], [60, 61, 62]
    with sqlite_db.engine.begin() as c:
        for i in updated:
            c.execute(table.update().where(table.c.id == i).values(body=body_of(i, 3, version=1)))
        c.execute(table.delete().where(table.c.id.in_(hard)))
        c.execute(table.update().where(table.c.id.in_(soft)).values(deleted=1))
        c.execute(table.insert(), [row(i) for i in new])
    counts, seen = run_partitions(params, embedder)
    changed = {str(i) for i in updated + hard + soft + new}
    assert set(seen[0]).isdisjoint(seen[1]), "a key was processed by both consumers"
    assert set(seen[0]) | set(seen[1]) == changed
    assert sum(c.upserted_docs for c in counts) == len(updated) + len(new)
    assert sum(c.deleted_docs for c in counts) == len(hard) + len(soft)
    assert sum(c.changes for c in counts) == len(changed)
    assert pending(params) == 0
    expected = all_keys - {str(i) for i in hard + soft} | {str(i) for i in new}
    assert indexed_keys(params) == source_keys(sqlite_db) == expected
    assert_index_holds_rows(sqlite_db, params, embedder)


def test_partitions_of_one_layout_start_together_at_lock_timeout_zero(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    """`sync --partition 0/2` and `1/2` started at the same instant (a scheduler's tick)
    with the default sync.lock_timeout_s 0: neither may be refused, each round."""
    seed(sqlite_db, [])
    params = load_params(write_settings(tmp_path / "ws", sqlite_db.url, sections=NO_GATE))
    assert params.sync.lock_timeout_s == 0
    install(params)
    consumers = [consumer(params, embedder, Partition(i, 2)) for i in (0, 1)]
    rounds = 200
    start, inside = threading.Barrier(2, timeout=20), threading.Barrier(2, timeout=20)
    refused: list[list[str]] = [[], []]

    def work(i: int) -> None:
        for n in range(rounds):
            try:
                start.wait()
            except threading.BrokenBarrierError:
                return
            try:
                with consumers[i].lock():
                    inside.wait()  # both partitions hold their locks at once
            except BusyError as exc:
                refused[i].append(f"round {n}: {exc}")
                start.abort()
                inside.abort()
                return
            except threading.BrokenBarrierError:
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for one in consumers:
            one.source.close()
    assert not any(t.is_alive() for t in threads)
    assert refused == [[], []], f"a partition of the same layout was refused: {refused}"


# -- 2. the per-source lock ---------------------------------------------------------------


def test_a_held_source_lock_refuses_at_timeout_zero_and_is_waited_for_at_thirty(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    seed(sqlite_db, [row(i) for i in range(5)])
    path = write_settings(tmp_path / "ws", sqlite_db.url, sections=NO_GATE)
    impatient = load_params(path)  # sync.lock_timeout_s defaults to 0
    assert impatient.sync.lock_timeout_s == 0
    patient = load_params(path, overrides={"sync": {"lock_timeout_s": 30}})
    install(impatient)

    holder = consumer(impatient, embedder)
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.lock():
            held.set()
            threading.Event().wait(1.0)
            released.set()  # set while still holding: whoever gets the lock next sees it

    thread = threading.Thread(target=hold)
    try:
        thread.start()
        assert held.wait(60)
        with pytest.raises(BusyError, match=r"sync\.lock_timeout_s") as busy:
            sync(impatient, embedder)
        assert "\n" not in str(busy.value)
        assert indexed_keys(impatient) == set(), "a refused sync wrote to the index"
        counts = sync(patient, embedder)
        assert released.is_set(), "the sync ran while another consumer held the lock"
    finally:
        thread.join(timeout=60)
        holder.source.close()
    assert counts.upserted_docs == 5
    assert indexed_keys(patient) == {str(i) for i in range(5)}


# -- 3. cursor capture at the real lookback and reconciliation period ---------------------


def cursor_params(db: Database, tmp_path: Path) -> Any:
    path = write_settings(tmp_path / "ws", db.url, capture="cursor", sections=NO_GATE)
    params = load_params(path)
    config = params.sources["docs"]
    assert (config.lookback_s, config.reconcile_every_s) == (300, 3600)  # the defaults
    return params


def test_cursor_lookback_edge_and_full_sync(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    table = seed(sqlite_db, [row(i) for i in range(10)])
    params = cursor_params(sqlite_db, tmp_path)
    first = sync(params, embedder)  # the first pass is a full one
    assert first.upserted_docs == 10
    watermark = StateStore(params.workspace.path).load("docs").watermark
    assert watermark is not None
    high = BASE + dt.timedelta(seconds=9)  # the newest row's updated_at
    assert dt.datetime.fromisoformat(str(watermark)).replace(tzinfo=None) == high

    with sqlite_db.engine.begin() as c:  # committed late, stamped before the watermark
        c.execute(
            table.insert(),
            [
                row(100, updated_at=high - dt.timedelta(seconds=299)),  # inside the lookback
                row(101, updated_at=high - dt.timedelta(seconds=301)),  # just outside it
            ],
        )
    counts = sync(params, embedder)
    assert counts.upserted_docs == 1
    assert indexed_keys(params) == {str(i) for i in range(10)} | {"100"}
    again = sync(params, embedder)  # the documented limit: the cursor never sees row 101
    assert again.upserted_docs == 0
    assert "101" not in indexed_keys(params)

    full = sync(params, embedder, full=True)
    assert full.upserted_docs == 1
    assert full.deleted_docs == 0
    assert (
        indexed_keys(params)
        == source_keys(sqlite_db)
        == {str(i) for i in range(10)}
        | {
            "100",
            "101",
        }
    )
    assert_index_holds_rows(sqlite_db, params, embedder)


def test_cursor_sees_hard_deletes_only_when_reconciliation_is_due(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    table = seed(sqlite_db, [row(i) for i in range(10)])
    params = cursor_params(sqlite_db, tmp_path)
    state = StateStore(params.workspace.path)
    sync(params, embedder)
    reconciled = state.load("docs").reconciled_at
    assert reconciled is not None  # the full pass counts as a reconciliation

    with sqlite_db.engine.begin() as c:
        c.execute(table.delete().where(table.c.id == 4))
    within = sync(params, embedder)
    assert within.deleted_docs == 0  # reconciliation is not due within the hour
    assert "4" in indexed_keys(params)
    assert state.load("docs").reconciled_at == reconciled

    saved = state.load("docs")
    saved.reconciled_at = reconciled - 3601  # the last reconciliation is over an hour old
    state.save(saved)
    due = sync(params, embedder)
    assert due.deleted_docs == 1
    assert due.upserted_docs == 0
    assert indexed_keys(params) == source_keys(sqlite_db) == {str(i) for i in range(10)} - {"4"}
    assert state.load("docs").reconciled_at > reconciled

    with sqlite_db.engine.begin() as c:  # just reconciled: the next one is an hour away
        c.execute(table.delete().where(table.c.id == 6))
    assert sync(params, embedder).deleted_docs == 0
    assert "6" in indexed_keys(params)


# -- 4. sync --full after a chunking change -----------------------------------------------


def chunk_counts(params: Any) -> dict[str, int]:
    return {key: len(chunks) for key, chunks in index_chunks(params).items()}


def test_full_sync_rechunks_every_document_after_a_chunking_change(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    seed(sqlite_db, [row(i, body=body_of(i, paragraphs=2 + i % 5)) for i in range(8)])

    def params_with(max_tokens: int) -> Any:
        chunking = f"chunking:\n  max_tokens: {max_tokens}\n  overlap_tokens: 16\n"
        path = write_settings(tmp_path / "ws", sqlite_db.url, sections=NO_GATE + chunking)
        return load_params(path)

    wide = params_with(200)
    install(wide)
    sync(wide, embedder)
    assert_index_holds_rows(sqlite_db, wide, embedder)
    before = chunk_counts(wide)
    assert sum(before.values()) == assert_index_matches(sqlite_db, wide, embedder)

    narrow = params_with(64)
    assert sync(narrow, embedder).changes == 0  # the queue is empty: a plain sync sees nothing
    counts = sync(narrow, embedder, full=True)
    after = chunk_counts(narrow)
    assert counts.upserted_docs == 8
    assert counts.reused_chunks == 0  # another fingerprint: every chunk is embedded anew
    assert counts.embedded_chunks == counts.written_chunks == sum(after.values())
    assert sum(after.values()) == assert_index_matches(sqlite_db, narrow, embedder)
    assert_index_holds_rows(sqlite_db, narrow, embedder)  # every chunk within 64 tokens
    grown = [k for k in before if after[k] > before[k]]
    assert grown, f"no document was split further: {before} -> {after}"

    wide_again = params_with(200)
    back = sync(wide_again, embedder, full=True)
    assert back.upserted_docs == 8
    assert chunk_counts(wide_again) == before  # surplus chunks of the narrow layout are gone
    assert_index_matches(sqlite_db, wide_again, embedder)
    assert_index_holds_rows(sqlite_db, wide_again, embedder)


# -- 5. blank text on an already indexed document -----------------------------------------


@pytest.mark.parametrize(
    ("quality", "stays"),
    [
        ("quality:\n  empty_text: delete\n", False),
        (NO_GATE, False),
        ("", True),  # the default: quarantine, the earlier version stays
    ],
    ids=["empty_text-delete", "quality-disabled", "default-quarantine"],
)
def test_blanked_text_of_an_indexed_document(
    sqlite_db: Database, tmp_path: Path, embedder: Any, quality: str, stays: bool
) -> None:
    table = seed(sqlite_db, [row(i) for i in range(4)])
    params = load_params(write_settings(tmp_path / "ws", sqlite_db.url, sections=quality))
    install(params)
    sync(params, embedder)
    earlier = [c["text"] for c in index_chunks(params)["2"]]
    assert earlier and "Paragraph 0 of document 2" in earlier[0]

    with sqlite_db.engine.begin() as c:
        c.execute(table.update().where(table.c.id == 2).values(title="  ", body="\n\t "))
    counts = sync(params, embedder)
    quarantine = {q["key"]: q["reasons"] for q in StateStore(params.workspace.path).quarantined()}
    if stays:
        assert counts.deleted_docs == 0
        assert list(quarantine) == ["2"]
        assert any("empty" in r for r in quarantine["2"]), quarantine
        assert [c["text"] for c in index_chunks(params)["2"]] == earlier
        assert indexed_keys(params) == {"0", "1", "2", "3"}
    else:
        assert counts.deleted_docs == 1
        assert quarantine == {}
        assert indexed_keys(params) == {"0", "1", "3"}
    assert pending(params) == 0


# -- 6. mass_delete_min_documents and batch_max_rows --------------------------------------


@pytest.mark.parametrize(
    ("minimum", "refused"), [(None, False), (10, True)], ids=["default-min-20", "min-10"]
)
def test_mass_delete_guard_applies_only_from_its_minimum(
    sqlite_db: Database, tmp_path: Path, embedder: Any, minimum: int | None, refused: bool
) -> None:
    table = seed(sqlite_db, [row(i) for i in range(10)])
    quality = "" if minimum is None else f"quality:\n  mass_delete_min_documents: {minimum}\n"
    params = load_params(write_settings(tmp_path / "ws", sqlite_db.url, sections=quality))
    assert params.quality.max_delete_fraction == 0.2
    install(params)
    assert sync(params, embedder).upserted_docs == 10
    with sqlite_db.engine.begin() as c:
        c.execute(table.delete().where(table.c.id < 5))  # half of 10 indexed documents
    if refused:
        with pytest.raises(QualityGateError, match="5 deletes held back"):
            sync(params, embedder)
        assert len(indexed_keys(params)) == 10
        assert pending(params) == 5
    else:
        assert sync(params, embedder).deleted_docs == 5
        assert indexed_keys(params) == {"5", "6", "7", "8", "9"}
        assert pending(params) == 0


def test_batch_max_rows_refuses_a_larger_batch_until_raised(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    table = seed(sqlite_db, [row(i) for i in range(3)])
    path = write_settings(
        tmp_path / "ws", sqlite_db.url, sections="quality:\n  batch_max_rows: 5\n", batch_size=64
    )
    params = load_params(path)
    install(params)
    assert sync(params, embedder).upserted_docs == 3
    with sqlite_db.engine.begin() as c:
        c.execute(table.insert(), [row(i) for i in range(100, 110)])  # one batch of 10
    with pytest.raises(QualityGateError) as refused:
        sync(params, embedder)
    message = str(refused.value)
    assert "\n" not in message
    assert "rows" in message and "10" in message and "nothing was written" in message
    assert "batch_max_rows" in message, f"the error does not name the setting: {message}"
    assert indexed_keys(params) == {"0", "1", "2"}
    assert pending(params) == 10

    raised = load_params(path, overrides={"quality": {"batch_max_rows": 10}})
    counts = sync(raised, embedder)
    assert counts.upserted_docs == 10
    assert indexed_keys(raised) == source_keys(sqlite_db)
    assert pending(raised) == 0


# -- 7. status names the versions trained on since-deleted labelled rows ------------------


QA_DDL = "CREATE TABLE qa_pairs (id TEXT PRIMARY KEY, question TEXT, answer TEXT, gone INTEGER)"


def training_workspace(db: Database, tmp_path: Path) -> tuple[Path, Any, list[str]]:
    """Two registered versions, v1 trained on q00-q04 and v2 on q05-q09."""
    assert db.path is not None
    seed(db, [row(i) for i in range(2)])
    with sqlite3.connect(db.path) as c:
        c.execute(QA_DDL)
        c.executemany(
            "INSERT INTO qa_pairs VALUES (?, ?, ?, 0)",
            [(f"q{i:02d}", f"Question number {i}?", f"Answer {i}.") for i in range(12)],
        )
    training = f'training:\n  url: "{db.url}"\n  table: qa_pairs\n  deleted: gone\n'
    path = write_settings(tmp_path / "ws", db.url, sections=NO_GATE + training)
    params = load_params(path)
    from ragtune.stages import open_tracker

    tracker = open_tracker(params)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    versions = []
    for _ in range(2):
        with tracker.run("train") as run_id:
            tracker.log_artifacts(run_id, adapter, "adapter")
            versions.append(tracker.register(run_id, "adapter", {}))
    state = StateStore(params.workspace.path)
    state.record_trained_keys(versions[0], [f"q{i:02d}" for i in range(5)])
    state.record_trained_keys(versions[1], [f"q{i:02d}" for i in range(5, 10)])
    return path, params, versions


def status_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run_cli(["status", "--json", "--params", str(path)], capsys)
    assert code == 0, err
    return json.loads(out)


def deleted_rows_tag(params: Any, version: str) -> str | None:
    from ragtune.stages import open_tracker

    return open_tracker(params).version_info(version)["tags"].get("ragtune.deleted_rows")


def test_status_names_exactly_the_versions_trained_on_deleted_rows(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ragtune.training import check_labelled_rows

    path, params, (v1, v2) = training_workspace(sqlite_db, tmp_path)
    assert status_json(path, capsys)["model"]["trained_on_deleted_rows"] == []
    assert sqlite_db.path is not None
    with sqlite3.connect(sqlite_db.path) as c:  # rows v1 trained on; q11 trained none
        c.execute("DELETE FROM qa_pairs WHERE id IN ('q01', 'q03', 'q11')")

    check = check_labelled_rows(params, path.parent)
    assert check.flagged_versions == [v1]
    assert status_json(path, capsys)["model"]["trained_on_deleted_rows"] == [v1]
    assert deleted_rows_tag(params, v1) == "2"
    assert deleted_rows_tag(params, v2) is None

    with sqlite3.connect(sqlite_db.path) as c:  # a soft delete counts as a delete
        c.execute("UPDATE qa_pairs SET gone = 1 WHERE id = 'q07'")
    assert check_labelled_rows(params, path.parent).flagged_versions == [v2]
    assert sorted(status_json(path, capsys)["model"]["trained_on_deleted_rows"]) == sorted([v1, v2])
    assert deleted_rows_tag(params, v2) == "1"

    with sqlite3.connect(sqlite_db.path) as c:  # one more row v1 trained on goes
        c.execute("DELETE FROM qa_pairs WHERE id = 'q04'")
    assert check_labelled_rows(params, path.parent).flagged_versions == []  # flagged once
    assert deleted_rows_tag(params, v1) == "3", "the count of deleted rows went stale"
