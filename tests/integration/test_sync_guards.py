"""Guards of one source's sync, exercised rather than configured: a capture read that fails
is re-read by the next call; one consumer per key across partition layouts; the
mass-delete guard counts over a window and holds only the deletes; a per-document chunk
budget; a quarantined update that changes who may read a row withdraws the old version.

All on SQLite with the changelog (the rules live in the engine-independent sync).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.index.lance import LanceIndex
from ragtune.adapters.sources import SqlSource
from ragtune.adapters.state import StateStore
from ragtune.config import load_params
from ragtune.errors import BusyError, QualityGateError
from ragtune.sync import Partition
from ragtune.workspace import open_syncs
from tests.support import Database, create_documents, indexed_keys, write_params
from tests.support import run_sync as sync

NO_GATE = "quality:\n  enabled: false\n"  # where the quality gate is not under test


def setup(
    db: Database, tmp_path: Path, rows: int, quality: str = "", extra: str = ""
) -> tuple[Any, sa.Table]:
    table = create_documents(db)
    with db.engine.begin() as c:
        c.execute(
            table.insert(),
            [
                {"id": i, "title": f"T{i}", "body": f"Body {i}.", "section": "a"}
                for i in range(rows)
            ],
        )
    params = load_params(write_params(tmp_path / "ws", db.url, quality=quality, extra=extra))
    source = SqlSource.open("docs", params.sources["docs"])
    Changelog(source, params.workspace.path).install()
    source.close()
    return params, table


def pending(params: Any) -> int:
    source = SqlSource.open("docs", params.sources["docs"])
    try:
        return Changelog(source, params.workspace.path).count()
    finally:
        source.close()


def rename(db: Database, old: str, new: str) -> None:
    with db.engine.begin() as c:
        c.exec_driver_sql(f'ALTER TABLE "{old}" RENAME TO "{new}"')


# -- a failed capture read is retried, not taken for "caught up" --------------------------


def test_capture_after_a_failed_read_rereads_the_same_page(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, table = setup(sqlite_db, tmp_path, rows=10, quality=NO_GATE)
    sync(params, embedder)
    with sqlite_db.engine.begin() as c:
        c.execute(table.insert(), [{"id": 50 + i, "title": "New", "body": "b"} for i in range(3)])
    (one,) = open_syncs(params, embedder=embedder)
    queue = one.changelog.table_name  # type: ignore[union-attr]
    try:
        one.start()
        rename(sqlite_db, queue, f"{queue}_away")  # the queue table is gone: reads fail
        with pytest.raises(sa.exc.OperationalError):
            one.capture()
        rename(sqlite_db, f"{queue}_away", queue)  # the source is back
        batch = one.capture()
        assert batch is not None, "a failed read was taken for 'caught up'"
        assert sorted(batch.keys) == ["50", "51", "52"]
    finally:
        one.source.close()


def test_a_full_pass_resumes_after_the_last_page_it_read(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, _ = setup(
        sqlite_db, tmp_path, rows=150, quality=NO_GATE
    )  # sync.batch_size is 64: three pages
    (one,) = open_syncs(params, embedder=embedder)
    try:
        one.start(full=True)
        first = one.capture()
        assert first is not None and len(first.keys) == 64
        rename(sqlite_db, "documents", "documents_away")
        with pytest.raises(sa.exc.OperationalError):
            one.capture()
        rename(sqlite_db, "documents_away", "documents")
        second = one.capture()
        assert second is not None
        assert sorted(map(int, second.keys)) == list(range(64, 128))
    finally:
        one.source.close()


# -- one consumer per key, across partition layouts ---------------------------------------


def test_partition_layouts_exclude_each_other(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, _ = setup(sqlite_db, tmp_path, rows=1, quality=NO_GATE)

    def consumer(index: int, count: int) -> Any:
        (one,) = open_syncs(params, partition=Partition(index, count), embedder=embedder)
        return one

    whole, part2, part3 = consumer(0, 1), consumer(2, 16), consumer(3, 16)
    try:
        with whole.lock(), pytest.raises(BusyError, match="as 1 partitions"), part2.lock():
            pass
        with part2.lock():
            # the same layout, another partition: both run; another layout is refused
            with part3.lock(), pytest.raises(BusyError, match="as 16 partitions"), whole.lock():
                pass
            with pytest.raises(BusyError, match=r"partition 2/16"), consumer(2, 16).lock():
                pass
        with whole.lock():  # all released
            pass
    finally:
        for one in (whole, part2, part3):
            one.source.close()


# -- the mass-delete guard --------------------------------------------------------------


def test_deletes_spread_over_passes_add_up_in_the_window(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, table = setup(sqlite_db, tmp_path, rows=50)  # max_delete_fraction 0.2
    sync(params, embedder)
    for step in range(2):  # 5 + 5 of 50: 0.2, at the limit
        with sqlite_db.engine.begin() as c:
            c.execute(table.delete().where(table.c.id.in_(range(step * 5, step * 5 + 5))))
        assert sync(params, embedder).deleted_docs == 5
    with sqlite_db.engine.begin() as c:
        c.execute(table.delete().where(table.c.id.in_(range(10, 15))))
    with pytest.raises(QualityGateError, match="5 deletes held back"):
        sync(params, embedder)
    assert len(indexed_keys(params)) == 40  # 15 of 50 would be 0.3
    assert pending(params) == 5


def test_a_refused_delete_does_not_hold_back_new_rows(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, table = setup(sqlite_db, tmp_path, rows=30)
    sync(params, embedder)
    with sqlite_db.engine.begin() as c:
        c.execute(table.delete().where(table.c.id < 10))  # a third of the index
        c.execute(table.insert(), [{"id": 100 + i, "title": "New", "body": "n"} for i in range(3)])
        c.execute(table.update().where(table.c.id == 20).values(body="Edited."))
    with pytest.raises(QualityGateError) as refused:
        sync(params, embedder)
    message = str(refused.value)
    assert "10 deletes held back" in message and "--allow-mass-delete" in message
    keys = indexed_keys(params)
    assert {"100", "101", "102"} <= keys, "new rows waited behind the refused deletes"
    assert {str(i) for i in range(10)} <= keys, "held deletes were applied"
    assert pending(params) == 10  # exactly the held deletes stay queued

    counts = sync(params, embedder, allow_mass_delete=True)
    assert counts.deleted_docs == 10
    assert indexed_keys(params) == {str(i) for i in range(10, 30)} | {"100", "101", "102"}
    assert pending(params) == 0


# -- a per-document chunk budget ----------------------------------------------------------


def test_a_document_over_the_chunk_budget_is_quarantined(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, table = setup(
        sqlite_db, tmp_path, rows=5, quality="quality:\n  max_chunks_per_document: 4\n"
    )
    sync(params, embedder)
    huge = "\n\n".join(f"Paragraph {p}. " + "many words repeated here " * 40 for p in range(30))
    with sqlite_db.engine.begin() as c:
        c.execute(table.update().where(table.c.id == 1).values(body=huge))
        c.execute(table.insert(), [{"id": 9, "title": "Fine", "body": "A normal row."}])
    counts = sync(params, embedder)
    assert counts.upserted_docs == 1  # row 9; row 1 held
    reasons = {q["key"]: q["reasons"] for q in StateStore(params.workspace.path).quarantined()}
    assert list(reasons) == ["1"]
    assert "max_chunks_per_document (4)" in reasons["1"][0]
    index = LanceIndex(params.index)
    assert index.ledger("docs", ["1"])["1"].chunks == 1  # the earlier version stays
    assert "9" in index.keys("docs")


# -- a quarantined update that changes the access scope -----------------------------------


def test_a_quarantined_update_that_changes_the_tenant_withdraws_the_old_version(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, table = setup(sqlite_db, tmp_path, rows=4)
    sync(params, embedder)
    with sqlite_db.engine.begin() as c:  # both updates fail a row check (control characters)
        c.execute(table.update().where(table.c.id == 1).values(tenant="acme", body="bad \x07"))
        c.execute(table.update().where(table.c.id == 2).values(body="also bad \x07"))
    sync(params, embedder)
    quarantined = {q["key"] for q in StateStore(params.workspace.path).quarantined()}
    assert quarantined == {"1", "2"}
    keys = indexed_keys(params)
    assert "1" not in keys, "row 1 became private, yet its public version stayed searchable"
    assert "2" in keys  # same scope: the earlier good version stays


def test_rows_held_as_they_are_read_still_lose_a_scope_they_no_longer_have(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    """Undecodable text is quarantined when the row is read, before the gate: a tenant
    change (or a soft delete) in the same update must still take effect in the index."""
    params, _ = setup(sqlite_db, tmp_path, rows=4)
    sync(params, embedder)
    with sqlite_db.engine.begin() as c:
        bad = "CAST(x'6f6bff21' AS TEXT)"
        c.exec_driver_sql(f"UPDATE documents SET tenant = 'acme', body = {bad} WHERE id = 1")
        c.exec_driver_sql(f"UPDATE documents SET body = {bad} WHERE id = 2")
        c.exec_driver_sql(f"UPDATE documents SET deleted = 1, body = {bad} WHERE id = 3")
    sync(params, embedder)
    quarantined = {q["key"] for q in StateStore(params.workspace.path).quarantined()}
    assert quarantined == {"1", "2"}
    assert indexed_keys(params) == {"0", "2"}  # 1 withdrawn, 2 kept, 3 deleted
