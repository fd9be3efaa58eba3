"""The command line: one-line errors that write nothing, search and status output shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ragtune.cli import main
from tests.support import Database, create_documents, write_params

RAGTUNE = [sys.executable, "-m", "ragtune"]


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None
) -> tuple[int, str, str]:
    """Run `ragtune ARGS` in this process; (exit code, stdout, stderr)."""
    old_argv = sys.argv
    sys.argv = ["ragtune", *args]
    if stdin is not None:
        import io

        old_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old_argv
        if stdin is not None:
            sys.stdin = old_stdin
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seeded(db: Database, tmp_path: Path, rows: int = 12) -> Path:
    table = create_documents(db)
    with db.engine.begin() as c:
        c.execute(
            table.insert(),
            [
                {
                    "id": i,
                    "title": f"Topic {i}",
                    "body": f"Database migrations step {i}."
                    if i % 2
                    else f"Cooking pasta recipe {i}.",
                    "section": "db" if i % 2 else "food",
                    "tenant": "acme" if i == 11 else None,
                }
                for i in range(rows)
            ],
        )
    return write_params(tmp_path / "ws", db.url)


BAD_CASES = {
    "wrong table": ("table: documents", "table: documentz", "table 'documentz' not found"),
    "wrong column": (
        "metadata: [section]",
        "metadata: [sektion]",
        "column 'sektion' (metadata) not found",
    ),
    "missing key column": ("key: id", "key: doc_id", "column 'doc_id' (key) not found"),
    "non-unique key": ("key: id", "key: section", "neither the primary key nor unique"),
    "unknown backend": (
        "sync:",
        "index:\n  backend: faiss\nsync:",
        "'index.backend': 'faiss' is not allowed",
    ),
    "unknown key": ("sync:", "sink:\n  x: 1\nsync:", "unknown key 'sink'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_config_is_one_line_nonzero_and_writes_nothing(
    case: str, sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = seeded(sqlite_db, tmp_path)
    old, new, expected = BAD_CASES[case]
    path.write_text(path.read_text().replace(old, new, 1))
    for command in (["source", "install"], ["sync", "--once"]):
        code, _out, err = run_cli([*command, "--params", str(path)], capsys)
        assert code != 0
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "ws" / ".ragtune").exists()
    inspector = sa.inspect(sqlite_db.engine)
    assert not [t for t in inspector.get_table_names() if t.startswith("ragtune_")]


def test_unreachable_databases_fail_fast_with_one_line(tmp_path: Path) -> None:
    """As a real process: exit code and stderr, for a refused server and a missing file."""
    env = {**os.environ, "COLUMNS": "300"}
    for url, expected in [
        (
            "postgresql+psycopg://postgres@127.0.0.1:1/nope",
            "cannot connect to postgresql+psycopg://postgres@127.0.0.1:1/nope",
        ),
        (
            "mysql+pymysql://root:secret@127.0.0.1:1/nope",
            "cannot connect to mysql+pymysql://root:***@127.0.0.1:1/nope",
        ),
        (f"sqlite:///{tmp_path}/missing.db", "does not exist"),
    ]:
        path = write_params(tmp_path / "ws", url)
        result = subprocess.run(
            [*RAGTUNE, "sync", "--params", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 3, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
        assert "secret" not in result.stderr
        assert not (tmp_path / "ws" / ".ragtune").exists()
    assert not (tmp_path / "missing.db").exists()


def test_bad_cli_arguments(
    sqlite_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(seeded(sqlite_db, tmp_path))
    for args, expected in [
        (["sync", "--once", "--follow"], "exclude each other"),
        (["sync", "--partition", "3/2"], "--partition '3/2'"),
        (["search", "--params", path], "give a QUERY"),
        (["search", "x", "--where", "novalue", "--params", path], "NAME=VALUE"),
        (["search", "x", "--mode", "fuzzy", "--params", path], "choose hybrid, vector or text"),
        (["sync", "--source", "nope", "--params", path], "no source named 'nope'"),
    ]:
        code, _, err = run_cli(args if "--params" in args else [*args, "--params", path], capsys)
        assert code != 0 and expected in err, (args, err)


def test_search_json_batch_and_status(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: Any
) -> None:
    path = str(seeded(database, tmp_path))
    assert run_cli(["source", "install", "--params", path], capsys)[0] == 0
    code, out, err = run_cli(["sync", "--once", "--json", "--params", path], capsys)
    assert code == 0, err
    assert json.loads(out)["sources"]["docs"]["upserted_docs"] == 12

    code, out, _ = run_cli(
        ["search", "database migrations", "-k", "3", "--json", "--params", path], capsys
    )
    payload = json.loads(out)
    assert payload["as_of"] is not None
    assert len(payload["results"]) == 3
    first = payload["results"][0]
    assert set(first) == {"source", "key", "chunk", "score", "text", "metadata"}
    assert first["source"] == "docs" and isinstance(first["key"], str)
    assert "migrations" in first["text"] and first["metadata"] == {"section": "db"}

    code, out, _ = run_cli(
        ["search", "recipe", "--where", "section=db", "--mode", "text", "--json", "--params", path],
        capsys,
    )
    assert json.loads(out)["results"] == []

    code, out, _ = run_cli(
        ["search", "Topic 11", "--tenant", "acme", "-k", "20", "--json", "--params", path], capsys
    )
    assert "11" in [r["key"] for r in json.loads(out)["results"]]
    code, out, _ = run_cli(["search", "Topic 11", "-k", "20", "--json", "--params", path], capsys)
    assert "11" not in [r["key"] for r in json.loads(out)["results"]]

    code, out, _ = run_cli(["search", "-", "--params", path], capsys, stdin="pasta\n\nmigrations\n")
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [line["query"] for line in lines] == ["pasta", "migrations"]
    queries = tmp_path / "queries.txt"
    queries.write_text("pasta recipe\nmigrations\n")
    code, out, _ = run_cli(["search", "--file", str(queries), "-k", "2", "--params", path], capsys)
    assert [len(json.loads(line)["results"]) for line in out.strip().splitlines()] == [2, 2]

    code, out, _ = run_cli(["status", "--json", "--params", path], capsys)
    status = json.loads(out)
    docs = status["sources"]["docs"]
    assert {"documents", "chunks", "lag_p50_s", "lag_p95_s", "as_of"} <= set(docs)
    assert docs["documents"] == 12 and docs["chunks"] == 12 and docs["pending"] == 0
    assert docs["lag_p95_s"] >= docs["lag_p50_s"] >= 0
    assert status["index"]["backend"] == "lancedb" and status["index"]["version"].isdigit()
    assert status["last_runs"][0]["status"] == "completed"
