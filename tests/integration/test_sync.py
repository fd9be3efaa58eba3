"""Sync against real SQLite, PostgreSQL and MariaDB, in both capture modes.

Inserts, updates, soft and hard deletes reach the index; a second sync with no change
embeds and writes nothing; a transaction left open across a sync is indexed once it
commits.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ragtune.adapters.changelog import Changelog
from ragtune.config import load_params
from ragtune.workspace import open_syncs
from tests.support import Database, assert_index_matches, create_documents, write_params

CAPTURES = ["changelog", "cursor"]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def row(i: int, body: str | None = None, **extra: Any) -> dict[str, Any]:
    values = {
        "id": i,
        "title": f"Document {i}",
        "body": body
        if body is not None
        else f"Body of document {i}. It talks about topic {i % 7}.",
        "section": f"s{i % 3}",
        "tenant": None,
        "deleted": 0,
        "updated_at": now(),
    }
    values.update(extra)
    return values


def setup_source(
    db: Database, tmp_path: Path, capture: str, rows: int = 30
) -> tuple[Any, sa.Table]:
    table = create_documents(db)
    with db.engine.begin() as connection:
        connection.execute(table.insert(), [row(i) for i in range(rows)])
    params = load_params(write_params(tmp_path / "ws", db.url, capture))
    if capture == "changelog":
        syncs = open_syncs_without_check(params)
        Changelog(syncs, params.workspace.path).install()
    return params, table


def open_syncs_without_check(params: Any) -> Any:
    from ragtune.adapters.sources import SqlSource

    return SqlSource.open("docs", params.sources["docs"])


def sync_once(params: Any, embedder: Any, full: bool = False) -> Any:
    (one,) = open_syncs(params, embedder=embedder)
    try:
        return one.run(full=full)
    finally:
        one.source.close()


@pytest.mark.parametrize("capture", CAPTURES)
def test_changes_reach_the_index(
    database: Database, tmp_path: Path, capture: str, embedder: Any
) -> None:
    params, table = setup_source(database, tmp_path, capture)
    first = sync_once(params, embedder)
    assert first.upserted_docs == 30
    assert_index_matches(database, params, embedder)

    long_body = "\n\n".join(f"Paragraph {p}. " + "words and more words " * 30 for p in range(8))
    with database.engine.begin() as c:
        c.execute(table.insert(), [row(100), row(101, body=long_body)])
        c.execute(
            table.update().where(table.c.id == 1).values(body="Rewritten body.", updated_at=now())
        )
        c.execute(table.update().where(table.c.id == 2).values(deleted=1, updated_at=now()))
        c.execute(table.delete().where(table.c.id == 3))
        c.execute(table.update().where(table.c.id == 4).values(section="moved", updated_at=now()))
    second = sync_once(params, embedder)
    assert second.upserted_docs == 4  # 100, 101, 1 and 4 (metadata counts as content)
    assert second.deleted_docs == 2  # 2 soft-deleted, 3 hard-deleted
    chunks = assert_index_matches(database, params, embedder)
    assert chunks > 31  # the long document made several chunks

    with database.engine.begin() as c:  # the long document shrinks: surplus chunks must go
        c.execute(
            table.update().where(table.c.id == 101).values(body="short now", updated_at=now())
        )
    sync_once(params, embedder)
    assert_index_matches(database, params, embedder)


@pytest.mark.parametrize("capture", CAPTURES)
def test_sync_without_changes_embeds_and_writes_nothing(
    database: Database, tmp_path: Path, capture: str, embedder: Any
) -> None:
    from ragtune.adapters.index.lance import LanceIndex

    params, _ = setup_source(database, tmp_path, capture, rows=20)
    sync_once(params, embedder)
    version = LanceIndex(params.index).version()
    again = sync_once(params, embedder)
    assert (again.embedded_chunks, again.written_chunks, again.index_writes) == (0, 0, 0)
    assert LanceIndex(params.index).version() == version
    full = sync_once(params, embedder, full=True)  # even a full re-read finds nothing to do
    # every row once; cursor mode then reads its lookback window (all 20 rows) again
    assert full.unchanged_docs == (20 if capture == "changelog" else 40)
    assert (full.embedded_chunks, full.index_writes) == (0, 0)


@pytest.mark.parametrize("capture", CAPTURES)
def test_late_commit_is_indexed_by_the_next_sync(
    database: Database, tmp_path: Path, capture: str, embedder: Any
) -> None:
    params, table = setup_source(database, tmp_path, capture, rows=5)
    sync_once(params, embedder)

    late = database.engine.connect()
    transaction = late.begin()
    late.execute(
        table.update().where(table.c.id == 2).values(body="Committed late.", updated_at=now())
    )
    late.execute(table.insert().values(row(50, body="Inserted late.")))
    try:
        if database.dialect != "sqlite":  # SQLite has one writer at a time
            with database.engine.begin() as c:
                c.execute(table.insert().values(row(60, body="Committed meanwhile.")))
        during = _in_thread(lambda: sync_once(params, embedder))
        assert during.embedded_chunks == (0 if database.dialect == "sqlite" else 1)
    finally:
        transaction.commit()
        late.close()
    after = sync_once(params, embedder)
    assert after.upserted_docs == 2  # 2 and 50; 60 was indexed by the sync in between
    assert_index_matches(database, params, embedder)


def _in_thread(work: Any) -> Any:
    """Run a sync in another thread while this one keeps its transaction open."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "sync blocked on the open transaction"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_an_edit_re_embeds_only_the_chunks_it_touched(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    import numpy as np

    from ragtune.adapters.index.lance import LanceIndex

    params, table = setup_source(sqlite_db, tmp_path, "changelog", rows=3)
    paragraphs = [f"Section {p} explains topic {p}. " + f"detail{p} " * 60 for p in range(12)]
    with sqlite_db.engine.begin() as c:
        c.execute(table.insert().values(row(7, body="\n\n".join(paragraphs))))
    sync_once(params, embedder)
    before = LanceIndex(params.index).vectors("docs", ["7"])
    assert len(before) >= 10

    paragraphs[5] = "Section 5 was rewritten entirely with new words about replication. " * 3
    with sqlite_db.engine.begin() as c:
        c.execute(
            table.update()
            .where(table.c.id == 7)
            .values(body="\n\n".join(paragraphs), updated_at=now())
        )
    counts = sync_once(params, embedder)
    assert counts.upserted_docs == 1
    assert 1 <= counts.embedded_chunks <= 3, counts
    assert counts.reused_chunks >= len(before) - 3
    assert_index_matches(sqlite_db, params, embedder)

    index = LanceIndex(params.index)
    rows = (
        index.table.search()
        .where("key = '7'")
        .select(["text", "vector", "chunk_hash"])
        .limit(None)
        .to_arrow()
    )
    stored = np.stack(rows["vector"].to_numpy(zero_copy_only=False))
    fresh = embedder.encode(rows["text"].to_pylist())
    assert float(np.min(np.sum(stored * fresh, axis=1))) > 0.99  # every vector belongs to its text
    kept = set(before) & {("7", h) for h in rows["chunk_hash"].to_pylist()}
    assert len(kept) >= len(before) - 3
