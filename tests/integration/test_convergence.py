"""Convergence: after a randomized workload with syncs running alongside, and one last
sync, the index holds exactly the source's (key, content hash) pairs — no missing, stale
or duplicate chunks. Then the same with the sync process SIGKILLed at random moments.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.sources import SqlSource
from ragtune.config import load_params
from ragtune.follow import follow
from ragtune.workspace import open_syncs
from tests.integration.workload import Workload
from tests.support import Database, assert_index_matches, create_documents, write_params

OPERATIONS = 2000


def prepare(db: Database, tmp_path: Path, capture: str) -> tuple[Any, Path, Workload]:
    table = create_documents(db)
    # the workload churns on purpose: heavy deletes and blanked rows are its normal traffic
    churn = "quality:\n  max_delete_fraction: 1.0\n  empty_text: delete\n"
    path = write_params(tmp_path / "ws", db.url, capture, quality=churn)
    params = load_params(path)
    if capture == "changelog":
        source = SqlSource.open("docs", params.sources["docs"])
        Changelog(source, params.workspace.path).install()
        source.close()
    workload = Workload(db.engine, table, seed=random.randrange(1 << 30))
    workload.run(200)  # a table that already holds rows before the first sync
    return params, path, workload


def final_sync(params: Any, embedder: Any) -> Any:
    (one,) = open_syncs(params, embedder=embedder)
    try:
        return one.run()
    finally:
        one.source.close()


@pytest.mark.parametrize("capture", ["changelog", "cursor"])
def test_randomized_workload_converges(
    database: Database, tmp_path: Path, capture: str, embedder: Any
) -> None:
    params, _, workload = prepare(database, tmp_path, capture)
    syncs = open_syncs(params, embedder=embedder)
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(syncs, 0.05, stop), daemon=True)
    follower.start()
    try:
        workload.run(OPERATIONS)
    finally:
        stop.set()
        follower.join(timeout=120)
    assert not follower.is_alive()
    final_sync(params, embedder)
    chunks = assert_index_matches(database, params, embedder)
    counts = workload.counts
    assert sum(counts.values()) >= OPERATIONS + 200
    assert min(counts.get(k, 0) for k in ("insert", "update", "soft_delete", "hard_delete")) > 50, (
        counts
    )
    assert chunks > 0


def _sync_forever(params_path: str) -> None:
    """The body of a sync process: exactly what `ragtune sync --follow` runs."""
    sys.argv = ["ragtune", "sync", "--follow", "--params", params_path]
    from ragtune.cli import main

    main()


def _runs_in_progress(workspace: Path) -> int:
    state = workspace / "state.db"
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=1) as db:
            return int(
                db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize(
    ("database", "capture"),
    [
        ("sqlite", "changelog"),
        ("postgresql", "changelog"),
        ("mysql", "changelog"),
        ("postgresql", "cursor"),
    ],
    indirect=["database"],
)
def test_converges_with_the_sync_process_killed(
    database: Database, tmp_path: Path, capture: str, embedder: Any
) -> None:
    params, path, workload = prepare(database, tmp_path, capture)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.integration.forkserver_preload"])
    stop = threading.Event()
    writer = threading.Thread(target=workload.run, args=(OPERATIONS, 0.004, stop), daemon=True)
    writer.start()
    rng = random.Random()
    kills = mid_pass_kills = 0
    try:
        while kills < 10 or writer.is_alive():
            child = context.Process(target=_sync_forever, args=(str(path),), daemon=True)
            child.start()
            if rng.random() < 0.5:  # a kill in the middle of a sync pass
                deadline = time.monotonic() + 15
                while (
                    _runs_in_progress(params.workspace.path) <= mid_pass_kills
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.02)
                time.sleep(rng.uniform(0, 0.3))
            else:  # a kill at any moment
                time.sleep(rng.uniform(0.5, 3.0))
            os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=30)
            assert child.exitcode == -signal.SIGKILL
            kills += 1
            mid_pass_kills = _runs_in_progress(params.workspace.path)
            if kills > 60:
                break
    finally:
        stop.set()
        writer.join(timeout=120)
    print(f"{kills} SIGKILLs, {mid_pass_kills} inside a sync pass, workload {workload.counts}")
    assert kills >= 10
    assert mid_pass_kills >= 3, f"only {mid_pass_kills} of {kills} kills landed inside a sync pass"
    final_sync(params, embedder)
    assert_index_matches(database, params, embedder)
