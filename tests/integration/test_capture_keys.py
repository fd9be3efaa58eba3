"""Changelog capture keys on the real engines: every legal write still works, every key
is re-read as the database compares it, and each consumer has its own queue.

The oracle is the source table itself: after a sync, the index (read straight from
LanceDB) holds exactly the rows' keys and texts written here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ragtune.config import load_params
from ragtune.errors import SourceError
from ragtune.workspace import open_state, open_syncs
from tests.integration.test_cli import run_cli
from tests.support import Database, create_database, drop_database

NULL_LABEL = "\u2400NULL"


@pytest.fixture
def mysql_db(tmp_path: Path) -> Iterator[Database]:
    db = create_database("mysql", tmp_path)
    try:
        yield db
    finally:
        drop_database(db)


def workspace(
    root: Path, url: str, key: str = "id", names: tuple[str, ...] = ("docs",), extra: str = ""
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    sources = "".join(
        f"""
  {name}:
    url: "{url}"
    table: notes
    key: {key}
    text: [body]
    capture: changelog"""
        for name in names
    )
    path = root / "params.yaml"
    path.write_text(f"sources:{sources}\nquality:\n  enabled: false\n{extra}")
    return path


def install(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["source", "install", "--params", str(path)], capsys)
    assert code == 0, err


def sync(path: Path, embedder: Any) -> None:
    for one in open_syncs(load_params(path), embedder=embedder):
        try:
            one.run()
        finally:
            one.source.close()


def indexed(path: Path, source: str = "docs") -> dict[str, str]:
    """key -> text of chunk 0, read from the LanceDB table directly."""
    import lancedb

    params = load_params(path)
    db = lancedb.connect(str(params.index.path))
    try:
        table = db.open_table(params.index.table)
    except (FileNotFoundError, ValueError):
        return {}
    rows = table.to_arrow().to_pylist()
    return {r["key"]: r["text"] for r in rows if r["source"] == source and r["chunk"] == 0}


def quarantined(path: Path) -> dict[str, list[str]]:
    return {q["key"]: q["reasons"] for q in open_state(load_params(path)).quarantined("docs")}


KEY_TYPES = {"sqlite": "TEXT", "postgresql": "text", "mysql": "VARCHAR(700)"}


def test_null_and_long_keys_are_legal_writes_and_null_is_quarantined(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    with database.engine.begin() as c:
        c.exec_driver_sql(
            f"CREATE TABLE notes (id INTEGER PRIMARY KEY, code {KEY_TYPES[database.dialect]} "
            "UNIQUE NULL, body TEXT)"
        )
    path = workspace(tmp_path / "ws", database.url, key="code")
    install(path, capsys)
    long_key = "k" * 600
    notes = sa.table("notes", sa.column("id"), sa.column("code"), sa.column("body"))
    with database.engine.begin() as c:  # the application's writes: none may fail
        c.execute(
            notes.insert(),
            [
                {"id": 1, "code": "None", "body": "a real row keyed None"},
                {"id": 2, "code": long_key, "body": "a long key"},
                {"id": 3, "code": None, "body": "a row without a key"},
            ],
        )
    sync(path, embedder)  # the first, full pass
    assert indexed(path) == {"None": "a real row keyed None", long_key: "a long key"}
    assert list(quarantined(path)) == [NULL_LABEL]
    assert "NULL" in quarantined(path)[NULL_LABEL][0]

    with database.engine.begin() as c:  # through the changelog now
        c.execute(notes.insert().values(id=4, code=None, body="another keyless row"))
        c.execute(notes.update().where(notes.c.id == 3).values(code="given"))
        c.execute(notes.update().where(notes.c.id == 1).values(body="still keyed None"))
    sync(path, embedder)
    assert indexed(path) == {
        "None": "still keyed None",
        long_key: "a long key",
        "given": "a row without a key",
    }
    assert "1 row(s)" in quarantined(path)[NULL_LABEL][0]

    with database.engine.begin() as c:
        c.execute(notes.delete().where(notes.c.id == 4))
        c.execute(notes.update().where(notes.c.code == long_key).values(code=None))
        c.execute(notes.delete().where(notes.c.code.is_(None)))
    sync(path, embedder)
    assert indexed(path) == {"None": "still keyed None", "given": "a row without a key"}
    assert quarantined(path) == {}


def test_untyped_sqlite_key_edits_stay_edits(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (id PRIMARY KEY, body TEXT)")
        c.exec_driver_sql("INSERT INTO notes VALUES (7, 'integer key v1'), ('8', 'text key v1')")
    path = workspace(tmp_path / "ws", sqlite_db.url)
    install(path, capsys)
    sync(path, embedder)
    assert indexed(path) == {"7": "integer key v1", "8": "text key v1"}
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql("UPDATE notes SET body = 'integer key v2' WHERE id = 7")
        c.exec_driver_sql("UPDATE notes SET body = 'text key v2' WHERE id = '8'")
        c.exec_driver_sql("INSERT INTO notes VALUES (9, 'new')")
    sync(path, embedder)
    assert indexed(path) == {"7": "integer key v2", "8": "text key v2", "9": "new"}


def test_case_insensitive_key_change_indexes_the_new_key(
    mysql_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    with mysql_db.engine.begin() as c:
        c.exec_driver_sql(
            "CREATE TABLE notes (id VARCHAR(20) CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_general_ci PRIMARY KEY, body TEXT)"
        )
        c.exec_driver_sql("INSERT INTO notes VALUES ('abc', 'lower v1'), ('keep', 'kept')")
    path = workspace(tmp_path / "ws", mysql_db.url)
    install(path, capsys)
    sync(path, embedder)
    assert indexed(path) == {"abc": "lower v1", "keep": "kept"}
    with mysql_db.engine.begin() as c:
        c.exec_driver_sql("UPDATE notes SET id = 'ABC', body = 'upper v2' WHERE id = 'abc'")
    sync(path, embedder)
    assert indexed(path) == {"ABC": "upper v2", "keep": "kept"}


def test_padded_char_key_edits_reach_the_index(
    postgres_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    with postgres_db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (id char(5) PRIMARY KEY, body text)")
        c.exec_driver_sql("INSERT INTO notes VALUES ('abc', 'padded v1'), ('abcde', 'full v1')")
    path = workspace(tmp_path / "ws", postgres_db.url)
    install(path, capsys)
    sync(path, embedder)
    assert sorted(indexed(path).values()) == ["full v1", "padded v1"]
    with postgres_db.engine.begin() as c:
        c.exec_driver_sql("UPDATE notes SET body = 'padded v2' WHERE id = 'abc'")
        c.exec_driver_sql("UPDATE notes SET body = 'full v2' WHERE id = 'abcde'")
    sync(path, embedder)
    assert indexed(path) == {"abc  ": "padded v2", "abcde": "full v2"}


def test_undecodable_text_quarantines_only_its_row(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        for i in range(64):
            c.exec_driver_sql(f"INSERT INTO notes VALUES ({i}, 'note number {i}')")
        c.exec_driver_sql("UPDATE notes SET body = CAST(x'6f6bff21' AS TEXT) WHERE id = 5")
    path = workspace(tmp_path / "ws", sqlite_db.url)
    install(path, capsys)
    sync(path, embedder)
    held = indexed(path)
    assert len(held) == 63 and "5" not in held
    assert list(quarantined(path)) == ["5"]
    assert "not valid UTF-8" in quarantined(path)["5"][0]

    with sqlite_db.engine.begin() as c:  # the changelog path: bad again, then fixed
        c.exec_driver_sql("UPDATE notes SET body = CAST(x'ff' AS TEXT) WHERE id = 6")
        c.exec_driver_sql("UPDATE notes SET body = 'repaired' WHERE id = 5")
    sync(path, embedder)
    held = indexed(path)
    assert held["5"] == "repaired" and held["6"] == "note number 6"  # earlier version stays
    assert list(quarantined(path)) == ["6"]


def test_each_workspace_and_each_source_consumes_its_own_queue(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    database = sqlite_db  # queue names and the registry are the same on every engine
    with database.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        c.exec_driver_sql("INSERT INTO notes VALUES (1, 'one v1'), (2, 'two v1')")
    second = workspace(tmp_path / "second", database.url)
    cased = workspace(tmp_path / "cased", database.url, names=("docs", "DOCS"))
    for path in (second, cased):  # two workspaces on source `docs`; `docs` and `DOCS`
        install(path, capsys)
        sync(path, embedder)
    with database.engine.begin() as c:
        c.exec_driver_sql("UPDATE notes SET body = 'one v2' WHERE id = 1")
        c.exec_driver_sql("DELETE FROM notes WHERE id = 2")
    for path in (second, cased):
        sync(path, embedder)
    want = {"1": "one v2"}
    assert indexed(second) == want
    assert indexed(cased, "docs") == want
    assert indexed(cased, "DOCS") == want
    with database.engine.connect() as c:
        registry = c.exec_driver_sql("SELECT source, workspace_path FROM ragtune_consumers").all()
    assert sorted((s, Path(p).parent.name) for s, p in registry) == [
        ("DOCS", "cased"),
        ("docs", "cased"),
        ("docs", "second"),
    ]


def test_an_old_shared_queue_asks_for_reinstall_and_install_upgrades_it(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    with sqlite_db.engine.begin() as c:  # the layout of ragtune before per-consumer queues
        c.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        c.exec_driver_sql(
            "CREATE TABLE ragtune_changelog_docs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "row_key VARCHAR(512) NOT NULL, op VARCHAR(1) NOT NULL, changed_at VARCHAR(32) "
            "NOT NULL)"
        )
        c.exec_driver_sql(
            "CREATE TRIGGER ragtune_docs_ins AFTER INSERT ON notes BEGIN INSERT INTO "
            "ragtune_changelog_docs (row_key, op, changed_at) VALUES (NEW.body, 'I', 'x'); END"
        )
    path = workspace(tmp_path / "ws", sqlite_db.url)
    with pytest.raises(SourceError, match=r"run `ragtune source install docs` again"):
        open_syncs(load_params(path), embedder=embedder)
    install(path, capsys)
    install(path, capsys)  # idempotent
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO notes VALUES (1, NULL)")  # the old NOT NULL queue is gone
        names = c.exec_driver_sql("SELECT name FROM sqlite_master WHERE name LIKE 'ragtune%'")
        left = sorted(n for (n,) in names)
    assert "ragtune_changelog_docs" not in left and "ragtune_docs_ins" not in left
    assert len([n for n in left if n.startswith("ragtune_cl_docs_")]) == 1
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql("UPDATE notes SET body = 'upgraded' WHERE id = 1")
    sync(path, embedder)
    assert indexed(path) == {"1": "upgraded"}


def test_install_into_an_unwritable_workspace_changes_nothing(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # (root may write anywhere: a file blocks mkdir)
    path = workspace(
        tmp_path / "ws", sqlite_db.url, extra=f"workspace:\n  path: {blocker / 'ws'}\n"
    )
    code, out, err = run_cli(["source", "install", "--params", str(path)], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: workspace "), err
    assert "not writable" in lines[0] and "Traceback" not in out + err
    with sqlite_db.engine.connect() as c:
        left = c.exec_driver_sql("SELECT name FROM sqlite_master WHERE name LIKE 'ragtune%'").all()
    assert left == []
