"""Test support: databases, a documents table, workspaces, and checking the index.

`assert_index_matches` is the convergence check: for every present row the index holds
exactly chunks 0..n-1, each carrying that row's current content hash, n being what the
chunker makes of it today; and it holds nothing else.

`assert_index_holds_rows` checks the same against the source rows themselves, without the
row -> document -> chunk code the sync uses: the key set, and per key the text its chunks
reassemble to, its tenant, its metadata, and every chunk within the model's token window.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306",
}
ADMIN_DB = {"postgresql": "postgres", "mysql": "test"}


@dataclass
class Database:
    dialect: str
    url: str
    engine: sa.Engine
    name: str
    path: Path | None = None


def _unreachable(dialect: str, exc: Exception) -> None:
    message = f"{dialect} server unreachable: {str(exc).splitlines()[0]}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def create_database(dialect: str, tmp_path: Path) -> Database:
    if dialect == "sqlite":
        path = tmp_path / f"source-{uuid.uuid4().hex[:6]}.db"
        sa.create_engine(f"sqlite:///{path}").dispose()
        path.touch()
        url = f"sqlite:///{path}"
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        return Database(dialect, url, engine, path.name, path)
    name = f"ragtune_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        f"{SERVERS[dialect]}/{ADMIN_DB[dialect]}", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        _unreachable(dialect, exc)
    finally:
        admin.dispose()
    url = f"{SERVERS[dialect]}/{name}"
    return Database(dialect, url, sa.create_engine(url), name)


def drop_database(db: Database) -> None:
    db.engine.dispose()
    if db.dialect == "sqlite":
        return
    admin = sa.create_engine(
        f"{SERVERS[db.dialect]}/{ADMIN_DB[db.dialect]}", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        if db.dialect == "postgresql":
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{db.name}' AND pid <> pg_backend_pid()"
            )
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {db.name}")
    admin.dispose()


def documents_table(metadata: sa.MetaData | None = None, name: str = "documents") -> sa.Table:
    """The test corpus table: every column kind a source may configure."""
    stamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(200)),
        sa.Column("body", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")),
        sa.Column("section", sa.String(50)),
        sa.Column("tenant", sa.String(50)),
        sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", stamp),
    )


def create_documents(db: Database, name: str = "documents") -> sa.Table:
    table = documents_table(name=name)
    table.metadata.create_all(db.engine)
    return table


def write_params(
    workspace: Path,
    url: str,
    capture: str = "changelog",
    table: str = "documents",
    extra: str = "",
    source_extra: str = "",
    quality: str = "",
) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    path = workspace / "params.yaml"
    path.write_text(
        f"""
sources:
  docs:
    url: "{url}"
    table: {table}
    key: id
    text: [title, body]
    metadata: [section]
    updated_at: updated_at
    deleted: deleted
    tenant: tenant
    capture: {capture}
    lookback_s: 60
    reconcile_every_s: 0
{source_extra}
sync:
  batch_size: 64
  poll_interval_s: 0.2
{extra}
{quality}
"""
    )
    return path


def index_entries(params: Any) -> list[tuple[str, int, str]]:
    from ragtune.adapters.index.lance import LanceIndex

    index = LanceIndex(params.index)
    try:
        return index.entries("docs")
    finally:
        index.close()


def expected_documents(db: Database, params: Any) -> dict[str, Any]:
    """key -> Document, for every present, non-deleted, non-empty row of the source."""
    import datetime as dt

    from ragtune.core.documents import document_from_row
    from ragtune.sync import row_spec

    config = params.sources["docs"]
    spec = row_spec(config)
    table = sa.Table(config.table, sa.MetaData(), autoload_with=db.engine)
    now = dt.datetime.now(dt.UTC)
    out = {}
    with db.engine.connect() as connection:
        for row in connection.execute(sa.select(table)).mappings():
            document = document_from_row("docs", spec, dict(row), now)
            if document is not None and document.text.strip():
                out[document.key] = document
    return out


def assert_index_matches(db: Database, params: Any, embedder: Any) -> int:
    """The index holds exactly the source's current documents; returns the chunk count."""
    from ragtune.core.chunking import chunk_document, fingerprint

    fp = fingerprint(
        params.embeddings.model, params.chunking.max_tokens, params.chunking.overlap_tokens
    )
    expected = expected_documents(db, params)
    held: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key, chunk, digest in index_entries(params):
        held[key].append((chunk, digest))
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    assert not missing, f"missing from index: {missing[:10]} ({len(missing)})"
    assert not extra, f"in index but not in source: {extra[:10]} ({len(extra)})"
    total = 0
    for key, document in expected.items():
        chunks = sorted(held[key])
        numbers = [n for n, _ in chunks]
        want = len(
            chunk_document(
                document.title,
                document.body,
                embedder.tokenizer,
                min(params.chunking.max_tokens, embedder.max_tokens),  # as the sync caps it
                params.chunking.overlap_tokens,
                document.format,
            )
        )
        assert numbers == list(range(want)), f"key {key}: chunks {numbers}, expected 0..{want - 1}"
        digest = document.content_hash(fp)
        stale = [n for n, h in chunks if h != digest]
        assert not stale, f"key {key}: stale chunks {stale}"
        total += len(chunks)
    return total


def index_chunks(params: Any) -> dict[str, list[dict[str, Any]]]:
    """key -> the index's stored chunks of source `docs`, read with lancedb itself."""
    import lancedb

    db = lancedb.connect(str(params.index.path))
    if params.index.table not in db.list_tables().tables:
        return {}
    rows = (
        db.open_table(params.index.table)
        .to_arrow()
        .select(["source", "key", "chunk", "text", "tenant", "metadata"])
        .to_pylist()
    )
    held: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["source"] == "docs":
            held[row["key"]].append(row)
    return {key: sorted(chunks, key=lambda c: c["chunk"]) for key, chunks in held.items()}


def _reassemble(contents: list[str]) -> str:
    """Chunk texts back into one text: consecutive chunks repeat up to `overlap_tokens` of
    whole paragraphs, so drop the longest run of leading paragraphs that ends the text so
    far (never a whole chunk: a repeated chunk stays visible)."""
    paragraphs: list[str] = []
    for content in contents:
        parts = content.split("\n\n")
        overlap = next(
            (
                k
                for k in range(min(len(parts) - 1, len(paragraphs)), 0, -1)
                if paragraphs[-k:] == parts[:k]
            ),
            0,
        )
        paragraphs += parts[overlap:]
    return "\n\n".join(paragraphs)


def assert_index_holds_rows(db: Database, params: Any, embedder: Any) -> int:
    """The index holds exactly the source's present rows, checked against the rows alone.

    For the documents table with `format: text` and bodies of blank-line-separated
    paragraphs, each shorter than a chunk (the test's workload makes such bodies; longer
    paragraphs split into sentences that this reassembly does not undo): a present row is one not soft-deleted with some title or body text; its
    chunks are numbered 0..n-1, each headed by the title, and their paragraphs, overlap
    removed, are its body; each carries the row's tenant and metadata and fits in
    min(chunking.max_tokens, the model's max_seq_length) tokens. Returns the chunk count.
    """
    config = params.sources["docs"]
    assert (config.key, tuple(config.text), config.format) == ("id", ("title", "body"), "text")
    assert config.deleted and config.tenant
    table = sa.Table(config.table, sa.MetaData(), autoload_with=db.engine)
    with db.engine.connect() as connection:
        present = {
            str(row["id"]): dict(row)
            for row in connection.execute(sa.select(table)).mappings()
            if not row[config.deleted]
            and ((row["title"] or "").strip() or (row["body"] or "").strip())
        }
    held = index_chunks(params)
    missing, extra = sorted(set(present) - set(held)), sorted(set(held) - set(present))
    assert not missing, f"missing from index: {missing[:10]} ({len(missing)})"
    assert not extra, f"in index but not in source: {extra[:10]} ({len(extra)})"
    tokenizer = embedder.model.tokenizer
    window = min(params.chunking.max_tokens, int(embedder.model.max_seq_length))
    total = 0
    for key, row in present.items():
        chunks = held[key]
        assert [c["chunk"] for c in chunks] == list(range(len(chunks))), f"key {key}: numbering"
        title, body = (row["title"] or "").strip(), (row["body"] or "").strip()
        texts = [c["text"] for c in chunks]
        if title and not body:
            assert texts == [title], f"key {key}: {texts!r} for a title-only row"
        else:
            head = f"{title}\n\n" if title else ""
            assert all(t.startswith(head) for t in texts), f"key {key}: a chunk lacks its title"
            assert _reassemble([t[len(head) :] for t in texts]) == body, f"key {key}: stale text"
        expected_meta = {name: row[name] for name in config.metadata}
        for chunk in chunks:
            assert chunk["tenant"] == row[config.tenant], f"key {key}: tenant {chunk['tenant']!r}"
            assert json.loads(chunk["metadata"]) == expected_meta, f"key {key}: metadata"
        sizes = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        assert max(sizes) <= window, f"key {key}: a chunk of {max(sizes)} tokens > {window}"
        total += len(chunks)
    return total


def run_sync(params: Any, embedder: Any, **kwargs: Any) -> Any:
    """One `SourceSync.run` pass of the params' only source, with the shared model."""
    from ragtune.workspace import open_syncs

    (one,) = open_syncs(params, embedder=embedder)
    try:
        return one.run(**kwargs)
    finally:
        one.source.close()


def indexed_keys(params: Any, source: str = "docs") -> set[str]:
    """The keys the workspace's LanceDB index holds for a source."""
    from ragtune.adapters.index.lance import LanceIndex

    return LanceIndex(params.index).keys(source)
