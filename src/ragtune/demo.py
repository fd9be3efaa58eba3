"""`ragtune demo`: a live documentation database, made searchable and kept in step.

1. Load Django 5.2's docs (from the sdist `make demo` downloads) into a SQLite
   `documents` table, holding back the latest release notes.
2. Install the changelog and sync: the whole corpus is chunked, embedded and indexed.
3. Follow the database while the held-back release notes arrive as live inserts; each is
   searched for until it shows up, and its commit-to-searchable lag is printed.
4. Print a few searches with their sources, and the freshness figures.
5. Make labelled question/answer pairs from the docs (the FAQ, and section headings with
   the first sentences under them), each with its category, plus questions the docs cannot
   answer (labelled with an abstention), in a `qa_pairs` table, and run the fine-tuning
   pipeline on them (`ragtune train`): the first model that beats the base becomes the
   champion.
6. Let a few new facts arrive (documents and questions newer than the training snapshot).
7. Answer questions with the champion, citing fresh sources (`ragtune ask`).
8. Evaluate base / RAG / fine-tuned / both, with the new facts as freshness probes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import sqlite3
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.index.base import SearchFilter
from ragtune.adapters.sources import SqlSource
from ragtune.config import Params
from ragtune.core.corpus import DocRow, doc_row, version_key
from ragtune.core.freshness import lag_summary
from ragtune.core.qa_pairs import QAPair, qa_pairs
from ragtune.core.unanswerable import unanswerable_pairs
from ragtune.errors import ConfigError, RagtuneError
from ragtune.follow import follow
from ragtune.search import as_of as search_as_of
from ragtune.search import search
from ragtune.workspace import open_embedder, open_index, open_state, open_syncs

DOCS_URL = "https://docs.djangoproject.com/en/5.2"
TABLE_DDL = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    url TEXT,
    section TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
)
"""
INSERT = "INSERT INTO documents (id, title, body, url, section) VALUES (:id, :title, :body, :url, :section)"
QA_DDL = """
CREATE TABLE {table} (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    document TEXT,
    kind TEXT,
    category TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
)
"""


def find_sdist(folder: Path) -> Path:
    found = sorted(folder.glob("[Dd]jango-*.tar.gz"))
    if not found:
        raise RagtuneError(
            f"no Django sdist in {folder}; run `make demo` (it downloads it) or "
            f"`pip download --no-binary :all: --no-deps 'django==5.2.*' -d {folder}`"
        )
    return found[-1]


def read_docs(sdist: Path) -> list[DocRow]:
    rows = []
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = member.name.split("/", 2)
            if (
                member.isfile()
                and len(parts) == 3
                and parts[1] == "docs"
                and member.name.endswith(".txt")
            ):
                handle = archive.extractfile(member)
                assert handle is not None
                text = handle.read().decode("utf-8", errors="replace")
                rows.append(doc_row(parts[2], text, DOCS_URL))
    return sorted(rows, key=lambda r: r.id)


def split_replay(rows: list[DocRow], pattern: str, count: int) -> tuple[list[DocRow], list[DocRow]]:
    """(rows loaded up front, the latest `count` rows matching `pattern` to replay live)."""
    matching = sorted(
        (r for r in rows if fnmatch.fnmatch(f"{r.id}.txt", pattern)),
        key=lambda r: version_key(r.id),
    )
    replay = matching[-count:] if count else []
    held = {r.id for r in replay}
    return [r for r in rows if r.id not in held], replay


def create_database(path: Path, rows: list[DocRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(TABLE_DDL)
        db.executemany(INSERT, [r.as_row() for r in rows])


def demo_pairs(
    rows: list[DocRow], max_pairs: int, max_answer_chars: int = 600, later: Sequence[DocRow] = ()
) -> list[QAPair]:
    """Every FAQ pair, then heading pairs spread over the whole corpus (by hash order), up
    to `max_pairs`; then the questions that neither `rows` nor the `later` documents answer."""
    pairs = qa_pairs(rows, max_answer_chars)
    faq = [p for p in pairs if p.kind == "faq"]
    spread = sorted(
        (p for p in pairs if p.kind != "faq"), key=lambda p: hashlib.sha256(p.id.encode()).digest()
    )
    return (faq + spread)[:max_pairs] + unanswerable_pairs([*rows, *later])


def create_qa_table(path: Path, table: str, pairs: list[QAPair]) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"DROP TABLE IF EXISTS {table}")  # table: a validated demo setting
        db.execute(QA_DDL.format(table=table))
        db.executemany(
            f"INSERT INTO {table} (id, question, answer, document, kind, category) "
            "VALUES (:id, :question, :answer, :document, :kind, :category)",
            [p.as_row() for p in pairs],
        )


def run_demo(
    params: Params, console: Console, fresh: bool = True, params_path: Path | None = None
) -> None:
    config = params.sources.get(params.demo.source)
    if config is None or not config.url.startswith("sqlite:///"):
        raise ConfigError(
            f"demo.source must name a SQLite source in params (got {params.demo.source!r})"
        )
    database = Path(config.url.removeprefix("sqlite:///"))
    sdist = find_sdist(params.demo.sdist_dir)
    rows = read_docs(sdist)
    initial, replay = split_replay(rows, params.demo.replay, params.demo.replay_count)
    console.rule(f"[bold]ragtune demo[/] — {sdist.name}: {len(rows)} documentation files")

    if fresh:
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
        shutil.rmtree(params.workspace.path, ignore_errors=True)
        shutil.rmtree(params.index.path, ignore_errors=True)
    if not database.exists():
        create_database(database, initial)
        console.print(
            f"1. loaded {len(initial)} documents into {database} (holding back {len(replay)})"
        )

    source_name = params.demo.source
    source = SqlSource.open(source_name, config)
    Changelog(source, params.workspace.path).install()
    source.close()
    open_state(params).require_full(source_name)
    syncs = open_syncs(params, source_name)
    console.print("2. installed the changelog triggers; syncing the whole corpus")

    started = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("embedding documents", total=len(initial))
        syncs[0].progress = lambda _n, done, total: bar.update(task, completed=done, total=total)
        counts = syncs[0].run()
    elapsed = time.perf_counter() - started
    console.print(
        f"   indexed {counts.upserted_docs} documents as {counts.written_chunks} chunks in "
        f"{elapsed:.1f}s ({counts.written_chunks / max(elapsed, 1e-9):.1f} chunks/s)"
    )
    _replay(params, console, syncs, database, replay)
    _show_searches(params, console)
    if params.demo.train and params_path is not None:
        from ragtune.demo_answers import add_fresh_facts, show_answers, show_evaluation

        _train(params, params_path, console, database, rows, fresh)
        add_fresh_facts(params, database, console)
        show_answers(params, console)
        show_evaluation(params, params_path, console)


def _train(
    params: Params,
    params_path: Path,
    console: Console,
    database: Path,
    rows: list[DocRow],
    fresh: bool,
) -> None:
    from ragtune.demo_answers import fresh_documents
    from ragtune.training import run_training

    pairs = demo_pairs(
        rows, params.demo.qa_max_pairs, params.demo.qa_max_answer_chars, fresh_documents()
    )
    create_qa_table(database, params.demo.qa_table, pairs)
    kinds = Counter(p.kind for p in pairs)
    categories = ", ".join(
        f"{n} {c}" for c, n in sorted(Counter(p.category for p in pairs).items())
    )
    console.print(
        f"\n5. made {len(pairs)} labelled question/answer pairs ({kinds['faq']} from the FAQ, "
        f"{kinds['heading']} from section headings, {kinds['unanswerable']} that the docs "
        f"cannot answer; {categories}) in table {params.demo.qa_table}; "
        "fine-tuning (ragtune train: DVC pipeline, LoRA, MLflow)"
    )
    started = time.perf_counter()
    result = run_training(
        params_path,
        echo=lambda line: console.print(f"   {line}", markup=False, highlight=False),
        force=fresh,  # a fresh workspace has an empty registry: run every stage
    )
    console.print(f"   pipeline finished in {time.perf_counter() - started:.0f}s")
    if result.promotion:
        p = result.promotion
        verdict = "champion" if p["promoted"] else "challenger"
        console.print(f"   ragtune-generator version {p['version']} is {verdict}: {p['reason']}")
    console.print(
        f"   MLflow: {params.tracking_uri()}; `ragtune up` opens the MLflow and Prefect UIs "
        "(retrain from the Prefect UI), `ragtune status` shows the champion"
    )


def _replay(
    params: Params, console: Console, syncs: list, database: Path, replay: list[DocRow]
) -> None:
    if not replay:
        return
    console.print(
        f"3. following the database (polling every {params.sync.poll_interval_s}s) while "
        f"{len(replay)} newer release notes arrive"
    )
    stop = threading.Event()
    syncs[0].progress = None
    follower = threading.Thread(
        target=follow, args=(syncs, params.sync.poll_interval_s, stop), daemon=True
    )
    follower.start()
    index, embedder = open_index(params), open_embedder(params)
    embedder.encode(["warm up"])
    table = Table("inserted", "title", "searchable after")
    lags = []
    try:
        for row in replay:
            with sqlite3.connect(database) as db:
                db.execute(INSERT, row.as_row())
            lag = _wait_until_found(index, embedder, params, row, timeout_s=60)
            lags.append(lag)
            table.add_row(row.id, row.title, "not found in 60 s" if lag is None else f"{lag:.2f} s")
    finally:
        stop.set()
        follower.join(timeout=30)
    console.print(table)
    measured = [lag for lag in lags if lag is not None]
    summary = lag_summary(measured)
    console.print(
        f"   commit-to-searchable lag: p50 {summary['lag_p50_s']} s, p95 {summary['lag_p95_s']} s "
        f"over {len(measured)} live inserts"
    )


def _wait_until_found(
    index, embedder, params: Params, row: DocRow, timeout_s: float
) -> float | None:
    """Seconds until a search for the row's title, scoped to its URL, returns it."""
    start = time.perf_counter()
    where = SearchFilter((params.demo.source,), tags=(f"url={row.url}",))
    while time.perf_counter() - start < timeout_s:
        hits = search(index, embedder, row.title, params.search, where, k=5)
        if any(h.key == row.id for h in hits):
            return time.perf_counter() - start
        time.sleep(0.05)
    return None


def _show_searches(params: Params, console: Console) -> None:
    index, embedder, state = open_index(params), open_embedder(params), open_state(params)
    console.print("4. a few searches (hybrid: vector + full text, fused by reciprocal rank)")
    for query in params.demo.queries:
        hits = search(index, embedder, query, params.search, SearchFilter(), k=3)
        console.print(f"\n[bold]> {query}[/]")
        for n, hit in enumerate(hits, start=1):
            snippet = " ".join(hit.text.split())[:150]
            console.print(
                f"  [{n}] {hit.metadata.get('url', hit.key)}  (score {hit.score:.4f})\n      {snippet}"
            )
    stats = index.stats(params.demo.source)
    summary = lag_summary(stats.lags_s)
    as_of = search_as_of(state, [params.demo.source])
    console.print(
        f"\nindex: {stats.documents} documents, {stats.chunks} chunks, version {index.version()}; "
        f"lag p50 {summary['lag_p50_s']} s, p95 {summary['lag_p95_s']} s; "
        f"as of {as_of.isoformat(timespec='seconds') if as_of else 'never'}"
    )
    console.print("Try: .venv/bin/ragtune search 'custom model field' --json | ragtune status")
