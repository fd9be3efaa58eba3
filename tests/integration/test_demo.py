"""`ragtune demo` end to end on a small docs sdist built here (no download); the demo's
labelled pairs on Django's real docs (when the sdist is there) with the demo's params."""

from __future__ import annotations

import io
import sqlite3
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ragtune.adapters.index.lance import LanceIndex
from ragtune.config import load_params
from ragtune.core.corpus import doc_row, split_title, version_key
from ragtune.core.dataset import split_of
from ragtune.core.unanswerable import ABSTENTION
from ragtune.demo import create_qa_table, demo_pairs, find_sdist, read_docs, run_demo, split_replay
from ragtune.demo_answers import FRESH_FACTS, fresh_documents

ROOT = Path(__file__).resolve().parents[2]


def rst(title: str, body: str) -> str:
    return f"{'=' * len(title)}\n{title}\n{'=' * len(title)}\n\n{body}\n\nDetails\n-------\n\nMore about {title}.\n"


def make_sdist(folder: Path) -> None:
    files = {
        "index.txt": rst("Documentation", "Start here."),
        "topics/db/models.txt": rst(
            "Models", "A model is the single source of truth about your data."
        ),
        "topics/migrations.txt": rst(
            "Migrations", "Migrations propagate model changes into the schema."
        ),
        "howto/deployment.txt": rst("How to deploy", "Use a WSGI or ASGI server in production."),
        "releases/5.2.txt": rst("Django 5.2 release notes", "Welcome to Django 5.2."),
    }
    for n in (1, 2, 3, 10):
        files[f"releases/5.2.{n}.txt"] = rst(
            f"Django 5.2.{n} release notes", f"Fixes in 5.2.{n}: bugfix number {n}."
        )
    folder.mkdir(parents=True)
    with tarfile.open(folder / "Django-5.2.99.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"django-5.2.99/docs/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        extra = tarfile.TarInfo("django-5.2.99/setup.py")
        archive.addfile(extra, io.BytesIO(b""))


def test_corpus_rows_and_replay_order() -> None:
    title, body = split_title(rst("Models", "Body text."))
    assert title == "Models" and body.startswith("Body text.")
    row = doc_row("topics/db/models.txt", rst("Models", "x"), "https://docs.example/en/5.2")
    assert (row.id, row.section, row.url) == (
        "topics/db/models",
        "topics",
        "https://docs.example/en/5.2/topics/db/models/",
    )
    assert sorted(["5.2.10", "5.2.9", "5.2.1"], key=version_key) == ["5.2.1", "5.2.9", "5.2.10"]
    rows = [doc_row(f"releases/5.2.{n}.txt", rst(f"r{n}", "x"), "u") for n in (1, 10, 2, 3)]
    rows.append(doc_row("releases/5.2.txt", rst("r", "x"), "u"))
    kept, replay = split_replay(rows, "releases/5.2.*.txt", 2)
    assert [r.id for r in replay] == ["releases/5.2.3", "releases/5.2.10"]
    assert {r.id for r in kept} == {"releases/5.2.1", "releases/5.2.2", "releases/5.2"}


def test_demo_loads_syncs_replays_and_searches(tmp_path: Path, embedder: Any) -> None:
    make_sdist(tmp_path / "data" / "demo" / "sdist")
    params_path = tmp_path / "params.yaml"
    repo_params = Path(__file__).resolve().parents[2] / "params.yaml"
    params_path.write_text(repo_params.read_text().replace("replay_count: 5", "replay_count: 2"))
    params = load_params(params_path)
    console = Console(file=io.StringIO(), width=200)
    run_demo(params, console)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "loaded 7 documents" in output and "holding back 2" in output
    assert "releases/5.2.10" in output and "not found" not in output
    assert "commit-to-searchable lag" in output
    index = LanceIndex(params.index)
    assert len(index.keys("docs")) == 9
    run_demo(params, console)  # a second run starts fresh and succeeds again
    assert len(LanceIndex(params.index).keys("docs")) == 9


def test_demo_pairs_table_holds_categories_and_abstentions(tmp_path: Path) -> None:
    make_sdist(tmp_path / "sdist")
    rows = read_docs(find_sdist(tmp_path / "sdist"))
    pairs = demo_pairs(rows, 100, 200, fresh_documents())
    database = tmp_path / "docs.db"
    create_qa_table(database, "qa_pairs", pairs)
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT category, answer, document FROM qa_pairs").fetchall()
    assert len(stored) == len(pairs)
    categories = Counter(category for category, _, _ in stored)
    assert categories["unanswerable"] >= 36, categories
    assert set(categories) <= {"faq", "how-to", "reference", "topic", "unanswerable"}
    assert all(
        (answer, document) == (ABSTENTION, None)
        for category, answer, document in stored
        if category == "unanswerable"
    )
    # no unanswerable question asks what a later fresh fact tells
    fresh_questions = {question for _, _, _, question, _ in FRESH_FACTS}
    assert not fresh_questions & {p.question for p in pairs}


def test_demo_params_give_a_test_split_of_at_least_100_questions() -> None:
    sdists = sorted((ROOT / "data/demo/sdist").glob("[Dd]jango-*.tar.gz"))
    if not sdists:
        pytest.skip("no Django sdist under data/demo/sdist (fetched by the demo)")
    params = load_params(ROOT / "params.yaml")
    demo, split = params.demo, params.snapshot
    pairs = demo_pairs(
        read_docs(sdists[-1]), demo.qa_max_pairs, demo.qa_max_answer_chars, fresh_documents()
    )
    where = {
        p.id: split_of(p.id, split.split_salt, split.validation_fraction, split.test_fraction)
        for p in pairs
    }
    assert Counter(where.values())["test"] >= 100
    abstaining = Counter(where[p.id] for p in pairs if p.category == "unanswerable")
    assert abstaining["train"] >= 20 and abstaining["test"] >= 5, abstaining
    assert all(len(p.answer) <= demo.qa_max_answer_chars for p in pairs)
