"""Quality-gate overhead: the same 1,000-row change batch synced with the gate and without
it, in two identical workspaces, alternating which goes first, three rounds."""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import install_changelog, workspace_params

from ragtune.workspace import open_embedder, open_syncs

ROWS = 1000
WORDS = [
    "capture",
    "index",
    "freshness",
    "replica",
    "tenant",
    "chunk",
    "vector",
    "watermark",
    "queue",
    "durable",
]


def _body(i: int, round_: int) -> str:
    return " ".join(WORDS[(i * 7 + j + round_) % len(WORDS)] for j in range(60)) + f" r{round_}."


def run(rounds: int = 3) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ragtune-bench-gate-"))
    seed = folder / "seed.db"
    with sqlite3.connect(seed) as db:
        db.execute(
            "CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT, body TEXT, url TEXT, section TEXT)"
        )
        db.executemany(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
            [(i, f"Document {i}", _body(i, 0), f"/doc/{i}", f"s{i % 5}") for i in range(ROWS)],
        )
    embedder = None
    sides: dict[str, Any] = {}
    for name, gate in (("gate", True), ("plain", False)):
        database = folder / f"{name}.db"
        shutil.copyfile(seed, database)
        params = workspace_params(
            folder / name, f"sqlite:///{database}", batch_size=ROWS, gate=gate
        )
        install_changelog(params)
        embedder = embedder or open_embedder(params)
        (sync,) = open_syncs(params, embedder=embedder)
        sync.run()  # the backfill, not measured
        sides[name] = (database, sync)
    timings: dict[str, list[float]] = {"gate": [], "plain": []}
    for round_ in range(1, rounds + 1):
        order = ["gate", "plain"] if round_ % 2 else ["plain", "gate"]
        for name in order:
            database, sync = sides[name]
            with sqlite3.connect(database) as db:
                db.executemany(
                    "UPDATE documents SET body = ? WHERE id = ?",
                    [(_body(i, round_), i) for i in range(ROWS)],
                )
            start = time.perf_counter()
            counts = sync.run()
            timings[name].append(time.perf_counter() - start)
            assert counts.upserted_docs == ROWS, counts
    gate_s, plain_s = statistics.median(timings["gate"]), statistics.median(timings["plain"])
    return {
        "rows": ROWS,
        "seconds": {k: [round(x, 3) for x in v] for k, v in timings.items()},
        "median_s": {"gate": round(gate_s, 3), "plain": round(plain_s, 3)},
        "overhead_fraction": round((gate_s - plain_s) / plain_s, 4),
    }


if __name__ == "__main__":
    print(run())
