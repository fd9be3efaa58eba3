"""The demo's last part: answers with their sources, then RAG vs fine-tuning measured.

After the first model is trained, a few facts arrive in the live database — new documents,
and labelled questions about them, newer than the training snapshot. They are synced into
the index like any change, and serve as the evaluation's freshness probes: the RAG
configurations can answer them, the fine-tuned model alone cannot.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rich.console import Console

from ragtune.answer import Answerer
from ragtune.config import Params
from ragtune.core.corpus import DocRow
from ragtune.evaluation import evaluate, save, tables
from ragtune.workspace import open_syncs

FRESH_FACTS = [
    (
        "bulletins/2026-11-release-manager",
        "Release bulletin: Django 5.2.30",
        "The release manager for Django 5.2.30 is Quillion Varga, who signs the release "
        "tarballs with the key 9F3A 21C7.",
        "Who is the release manager for Django 5.2.30?",
        "Quillion Varga is the release manager for Django 5.2.30.",
    ),
    (
        "bulletins/2026-11-sprint-venue",
        "Sprint bulletin: winter sprint venue",
        "The Django winter sprint of 2026 takes place in the harbour library of Tromsø, "
        "room Nordlys, from 7 to 9 December.",
        "Where does the Django winter sprint of 2026 take place?",
        "In the harbour library of Tromsø, room Nordlys.",
    ),
    (
        "bulletins/2026-11-mirror",
        "Infrastructure bulletin: documentation mirror",
        "A read-only mirror of the documentation now runs at docs-mirror.example.org and is "
        "refreshed every fifteen minutes.",
        "How often is the documentation mirror refreshed?",
        "The documentation mirror is refreshed every fifteen minutes.",
    ),
]


def fresh_documents() -> list[DocRow]:
    """The documents that arrive after the training snapshot, as corpus rows."""
    return [
        DocRow(key, title, body, f"https://example.org/{key}/", "bulletins")
        for key, title, body, _, _ in FRESH_FACTS
    ]


def add_fresh_facts(params: Params, database: Path, console: Console) -> None:
    """New documents and labelled questions about them, synced into the index."""
    source = params.demo.source
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT OR REPLACE INTO documents (id, title, body, url, section) "
            "VALUES (:id, :title, :body, :url, :section)",
            [row.as_row() for row in fresh_documents()],
        )
        db.executemany(
            f"INSERT OR REPLACE INTO {params.demo.qa_table} "
            "(id, question, answer, document, kind, category) "
            "VALUES (?, ?, ?, ?, 'fresh', 'fresh')",
            [(f"{key}#q", q, a, key) for key, _, _, q, a in FRESH_FACTS],
        )
    for one in open_syncs(params, source):
        one.run()
        one.source.close()
    console.print(
        f"\n6. {len(FRESH_FACTS)} new facts arrived after the training snapshot (documents and "
        "labelled questions); synced into the index"
    )


def show_answers(params: Params, console: Console) -> None:
    answerer = Answerer(params, "champion")
    model = answerer.generator
    label = f"{model.name} v{model.version}" if model.version else f"{model.name} (no champion)"
    console.print(
        f"7. answers by {label}, from fresh sources, citing them as \\[n]", highlight=False
    )
    questions = [params.demo.queries[0], FRESH_FACTS[0][3]]
    for question in questions:
        answer = answerer.ask(question, k=3)
        console.print(f"\n[bold]> {question}[/]")
        console.print(f"  {answer.answer}", markup=False, highlight=False)
        for citation in answer.citations:
            hit = answer.sources[citation["n"] - 1]
            console.print(f"  [{citation['n']}] {hit.metadata.get('url', hit.key)}", markup=False)
        console.print(
            f"  (retrieve {answer.timings['retrieve_ms']:.0f} ms, generate "
            f"{answer.timings['generate_ms']:.0f} ms)"
        )


def show_evaluation(params: Params, params_path: Path, console: Console) -> None:
    console.print("\n8. ragtune evaluate: base / RAG / fine-tuned / both on held-out questions")
    root = params_path.resolve().parent
    report = evaluate(params, root)
    paths = save(params, report, root)
    for table in tables(report):
        console.print(table)
    console.print(f"   report: {paths['markdown']}")
