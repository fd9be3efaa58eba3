"""A damaged index is never reported healthy (real LanceDB, SQLite source, the CLI in process).

Each case damages an indexed workspace the way a disk or a person does: a data file
deleted, the latest manifest cut short, the whole index folder deleted (then one row
edited, which an incremental sync used to "rebuild" into an index of one document).
`search`, `status` and `sync` must each answer one `error:` line, exit 4 and name
`ragtune sync --full --rebuild`; that command must bring back every row, checked against
the source rows read with plain SQL and the index read with plain lancedb (not ragtune's
adapter). A full disk (a real, tiny tmpfs) must be one line too, and lose nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ragtune.cli import main
from tests.support import Database, create_documents, write_params

ROWS = 24
FIX = "ragtune sync --full --rebuild"
NO_GATE = "quality:\n  enabled: false\n"  # the quality gate is not under test here


@pytest.fixture(autouse=True)
def shared_embedder(monkeypatch: pytest.MonkeyPatch, embedder: Any) -> None:
    """Every command in this process uses the session's model instead of loading its own."""
    monkeypatch.setattr("ragtune.workspace.open_embedder", lambda params: embedder)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`ragtune ARGS` in this process: (exit code, stdout, stderr). An exception that is not
    a ragtune error escapes main() and fails the test with its traceback."""
    old_argv, sys.argv = sys.argv, ["ragtune", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old_argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def body(i: int) -> str:
    return f"Schema migration step {i} moves table {i} forward."


def seed(db: Database, workspace: Path, extra: str = "") -> tuple[sa.Table, str]:
    table = create_documents(db)
    with db.engine.begin() as c:
        c.execute(
            table.insert(),
            [{"id": i, "title": f"Topic {i}", "body": body(i)} for i in range(ROWS)],
        )
    return table, str(write_params(workspace, db.url, extra=extra, quality=NO_GATE))


def source_rows(db: Database) -> dict[str, str]:
    """key -> body, straight from the source table."""
    with db.engine.connect() as c:
        return {str(i): b for i, b in c.exec_driver_sql("SELECT id, body FROM documents")}


def indexed_texts(index_path: Path) -> dict[str, list[str]]:
    """key -> its chunk texts in chunk order, read with lancedb itself."""
    import lancedb

    rows = lancedb.connect(str(index_path)).open_table("chunks").to_arrow().to_pylist()
    found: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        assert row["source"] == "docs"
        found.setdefault(row["key"], []).append((row["chunk"], row["text"]))
    return {key: [text for _, text in sorted(chunks)] for key, chunks in found.items()}


def assert_index_holds(db: Database, index_path: Path) -> None:
    expected = source_rows(db)
    held = indexed_texts(index_path)
    assert len(expected) == ROWS
    assert set(held) == set(expected), sorted(set(held) ^ set(expected))
    for key, text in expected.items():
        assert text in " ".join(held[key]), (key, held[key])


def assert_refused(args: list[str], path: str, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli([*args, "--params", path], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 4, (args, code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert FIX in lines[0], (args, lines[0])
    assert "Traceback" not in err and not out.strip(), (args, out, err)
    return lines[0]


def delete_a_data_file(index_path: Path) -> None:
    files = sorted((index_path / "chunks.lance" / "data").glob("*.lance"))
    assert files, "the sync wrote no data file"
    files[0].unlink()


def truncate_the_manifest(index_path: Path) -> None:
    import lance

    table = index_path / "chunks.lance"
    version = lance.dataset(str(table)).version
    # Lance names manifests u64::MAX - version (or the version itself, in the older scheme)
    names = [f"{2**64 - 1 - version}.manifest", f"{version}.manifest"]
    manifest = next(p for n in names if (p := table / "_versions" / n).is_file())
    manifest.write_bytes(manifest.read_bytes()[:40])


def delete_the_folder_and_edit_a_row(index_path: Path, db: Database, table: sa.Table) -> None:
    shutil.rmtree(index_path)
    with db.engine.begin() as c:
        c.execute(table.update().where(table.c.id == 5).values(body="Rollback plan for step 5."))


@pytest.mark.parametrize("damage", ["data file deleted", "manifest truncated", "folder deleted"])
def test_damaged_index_is_refused_until_rebuilt(
    damage: str, sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, path = seed(sqlite_db, tmp_path / "ws")
    index_path = tmp_path / "ws" / ".ragtune" / "index"
    assert run_cli(["source", "install", "--params", path], capsys)[0] == 0
    code, _, err = run_cli(["sync", "--params", path], capsys)
    assert code == 0, err
    assert_index_holds(sqlite_db, index_path)

    if damage == "data file deleted":
        delete_a_data_file(index_path)
    elif damage == "manifest truncated":
        truncate_the_manifest(index_path)
    else:
        delete_the_folder_and_edit_a_row(index_path, sqlite_db, table)

    for args in (["search", "migration step"], ["status"], ["status", "--json"], ["sync"]):
        line = assert_refused(args, path, capsys)
    assert str(index_path) in line
    if damage == "folder deleted":  # the refused sync wrote nothing: no index of one document
        assert not (index_path / "chunks.lance").exists()

    code, out, err = run_cli(["sync", "--full", "--rebuild", "--params", path], capsys)
    assert code == 0, err
    assert_index_holds(sqlite_db, index_path)

    code, out, err = run_cli(["status", "--json", "--params", path], capsys)
    assert code == 0, err
    docs = json.loads(out)["sources"]["docs"]
    assert docs["documents"] == ROWS and docs["pending"] == 0, docs
    code, out, err = run_cli(["search", "rollback plan", "--json", "--params", path], capsys)
    assert code == 0, err
    assert json.loads(out)["results"], out
    code, out, err = run_cli(["sync", "--params", path], capsys)  # healthy again: no refusal
    assert code == 0, err


def test_a_full_pass_over_a_lost_index_is_owed_until_it_completes(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync --full` re-reads every row anyway, so it may rebuild a deleted index; and the
    index a rebuild of the folder makes is then the one the workspace checks against."""
    table, path = seed(sqlite_db, tmp_path / "ws")
    index_path = tmp_path / "ws" / ".ragtune" / "index"
    assert run_cli(["source", "install", "--params", path], capsys)[0] == 0
    assert run_cli(["sync", "--params", path], capsys)[0] == 0
    delete_the_folder_and_edit_a_row(index_path, sqlite_db, table)
    code, _, err = run_cli(["sync", "--full", "--params", path], capsys)
    assert code == 0, err
    assert_index_holds(sqlite_db, index_path)
    assert run_cli(["sync", "--params", path], capsys)[0] == 0  # records the new index
    shutil.rmtree(index_path)
    assert "is gone" in assert_refused(["sync"], path, capsys)


def fill(disk: Path) -> Path:
    """Take every free block of `disk` with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs (needs root and mount; skipped, saying why, elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a disk-full test mounts a tiny tmpfs, which needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", f"ragtune-{uuid.uuid4().hex[:6]}", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_loses_nothing(
    sqlite_db: Database, tmp_path: Path, tiny_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_path = tiny_disk / "index"
    table, path = seed(sqlite_db, tmp_path / "ws", extra=f"index:\n  path: {index_path}\n")
    assert run_cli(["source", "install", "--params", path], capsys)[0] == 0
    assert run_cli(["sync", "--params", path], capsys)[0] == 0
    filler = fill(tiny_disk)
    assert os.statvfs(tiny_disk).f_bavail == 0
    with sqlite_db.engine.begin() as c:
        c.execute(table.update().values(body=sa.func.printf("Edited step %d.", table.c.id)))

    code, _, err = run_cli(["sync", "--params", path], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 4, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is full" in lines[0], err
    assert "free space" in lines[0] and "Traceback" not in err

    filler.unlink()
    code, _, err = run_cli(["sync", "--params", path], capsys)
    assert code == 0, err
    assert_index_holds(sqlite_db, index_path)
    assert all(text.startswith("Edited step") for text in source_rows(sqlite_db).values())


def test_an_index_created_anew_is_not_the_one_a_source_was_indexed_into(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another source's rebuild (or anything else) may create the table again after the
    folder was lost: it exists, but it does not hold what this source had in it."""
    import datetime as dt

    import numpy as np

    from ragtune.adapters.index.base import ChunkRecord, IndexDamagedError
    from ragtune.adapters.index.lance import LanceIndex
    from ragtune.adapters.state import RunCounts, StateStore
    from ragtune.config import load_params
    from ragtune.index_health import verify

    _, path = seed(sqlite_db, tmp_path / "ws")
    params = load_params(Path(path))
    state = StateStore(params.workspace.path)
    now = dt.datetime.now(dt.UTC)

    def index_with_one_chunk(source: str) -> str | None:
        index = LanceIndex(params.index)
        index.ensure(4)
        index.upsert(
            [
                ChunkRecord(
                    f"{source}-1",
                    source,
                    "1",
                    0,
                    "text",
                    np.ones(4, np.float32),
                    "h",
                    now,
                    now,
                    None,
                    {},
                    [],
                )
            ]
        )
        found = index.identity()
        index.close()
        return found

    first = index_with_one_chunk("docs")
    assert first is not None
    state.record_index("docs", first)
    state.finish_run(state.start_run("docs", "sync"), "completed", RunCounts(written_chunks=1))
    verify(params, LanceIndex(params.index), state, ["docs"])  # healthy: no error

    shutil.rmtree(params.index.path)
    second = index_with_one_chunk("other")
    assert second is not None and second != first
    with pytest.raises(IndexDamagedError, match="not the one source 'docs' was indexed into"):
        verify(params, LanceIndex(params.index), state, ["docs"])
    assert "not the one" in assert_refused(["status"], path, capsys)


def test_rebuild_is_one_pass_over_whole_sources(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = seed(sqlite_db, tmp_path / "ws")
    for extra in (["--follow"], ["--partition", "0/2"]):
        code, _, err = run_cli(["sync", "--full", "--rebuild", *extra, "--params", path], capsys)
        assert code == 2 and "--rebuild is one pass over whole sources" in err, (extra, err)
    assert not (tmp_path / "ws" / ".ragtune").exists()


def test_answers_and_the_api_refuse_a_lost_index(
    sqlite_db: Database, tmp_path: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retrieval for `ask` and the HTTP API checks the index as `search` does: a deleted
    folder is an error naming the fix, not an answer without sources."""
    from fastapi.testclient import TestClient

    from ragtune.adapters.index.base import IndexDamagedError
    from ragtune.answer import Answerer
    from ragtune.api import create_app
    from ragtune.config import load_params
    from ragtune.workspace import open_index, open_state

    table, path = seed(sqlite_db, tmp_path / "ws")
    assert run_cli(["source", "install", "--params", path], capsys)[0] == 0
    assert run_cli(["sync", "--params", path], capsys)[0] == 0
    params = load_params(path)
    delete_the_folder_and_edit_a_row(params.index.path, sqlite_db, table)

    answerer = Answerer.over(params, open_index(params), embedder, open_state(params), None)  # type: ignore[arg-type]
    with pytest.raises(IndexDamagedError, match="--rebuild"):
        answerer.retrieve("Which step moves table 5?", k=3, tenant=None)
    with TestClient(create_app(params, answerer)) as client:
        response = client.get("/search", params={"q": "Which step moves table 5?"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert FIX in detail and "\n" not in detail
