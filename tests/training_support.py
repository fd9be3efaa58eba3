"""A tiny fine-tuning project in a temporary git repository, for pipeline and flow tests.

The project holds copies of dvc.yaml and pipelines/, a SQLite `qa_pairs` table of
labelled rows, and a params.yaml that trains the tiny `from_config` model for two steps.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QA_DDL = """
CREATE TABLE qa_pairs (
    id TEXT PRIMARY KEY,
    question TEXT,
    answer TEXT,
    document TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
)
"""
COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "silver"]


def qa_rows(start: int, count: int) -> list[tuple[str, str, str, str]]:
    return [
        (
            f"q{i:04d}",
            f"Which colour is the badge of team {i}?",
            f"Team {i} wears a {COLOURS[i % len(COLOURS)]} badge.",
            f"teams/{i % 5}",
        )
        for i in range(start, start + count)
    ]


def insert_rows(database: Path, rows: list[tuple[str, str | None, str | None, str]]) -> None:
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO qa_pairs (id, question, answer, document) VALUES (?, ?, ?, ?)", rows
        )


def make_project(folder: Path, base_model: Path, rows: int = 40, extra: str = "") -> Path:
    """The project folder's params.yaml path; a git repository with one commit."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    shutil.copytree(ROOT / "pipelines", folder / "pipelines")
    database = folder / "labels.db"
    with sqlite3.connect(database) as db:
        db.execute(QA_DDL)
    insert_rows(database, qa_rows(0, rows))
    params = folder / "params.yaml"
    params.write_text(
        f"""
training:
  url: sqlite:///labels.db
  table: qa_pairs
  document: document
  updated_at: updated_at
snapshot:
  validation_fraction: 0.15
  test_fraction: 0.15
quality:
  training:
    min_rows: 10
train:
  base_model: {base_model}
  lora_rank: 4
  lora_alpha: 8
  learning_rate: 0.005
  max_steps: 2
  batch_size: 8
  max_seq_len: 128
  eval_every: 1
  precision: fp32
evaluate:
  max_questions: 2
  max_new_tokens: 4
versioning:
  remote: {folder / "remote"}
{extra}"""
    )
    (folder / ".gitignore").write_text(
        "labels.db\n.ragtune/\nparams.run.yaml\ndata/training/source.json\nremote/\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "add", "-A"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-qm", "project"], cwd=folder, check=True)
    return params


DOCS_SOURCE = """
sources:
  docs:
    url: sqlite:///labels.db
    table: documents
    key: id
    text: [title, body]
    metadata: [title]
"""


def add_documents(database: Path, extra: tuple[tuple[str, str, str], ...] = ()) -> None:
    """A `documents` table whose rows hold the answers: team badge colours, and `extra`."""
    rows = [
        (
            f"teams/{t}",
            f"Team group {t}",
            " ".join(
                f"Team {i} wears a {COLOURS[i % len(COLOURS)]} badge." for i in range(t, 700, 5)
            ),
        )
        for t in range(5)
    ]
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, title TEXT, body TEXT)"
        )
        db.executemany("INSERT INTO documents VALUES (?, ?, ?)", [*rows, *extra])
