"""Convergence: after a randomized workload with syncs running alongside, and one last
sync, the index holds exactly the source's rows — no missing, stale or duplicate chunks,
checked against the rows themselves (`assert_index_holds_rows`). Then the same with the
sync process SIGKILLed at chosen points inside a pass (each point once, on the pass's
first or second batch).

Each run prints its seed; `RAGTUNE_TEST_SEED=<seed>` replays the same writes and the same
kill schedule.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
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
from tests.support import (
    Database,
    assert_index_holds_rows,
    assert_index_matches,
    create_documents,
    write_params,
)

OPERATIONS = 2000
# the sync caps chunks at the model's 256-token window; `format: text` keeps a body's
# Markdown-looking headings as text
SETTINGS = "chunking:\n  max_tokens: 512\n"


def workload_seed() -> int:
    """RAGTUNE_TEST_SEED, or a fresh one; printed, so a failure can be replayed."""
    seed = int(os.environ.get("RAGTUNE_TEST_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"seed {seed}: replay with RAGTUNE_TEST_SEED={seed}")
    return seed


class HeadedWorkload(Workload):
    """The workload, with some bodies opening on a Markdown heading line."""

    def body(self) -> str:
        text = super().body()
        return (
            f"# {self.rng.choice(['Setup', 'Usage'])}\n\n{text}"
            if text and self.rng.random() < 0.2
            else text
        )


def prepare(
    db: Database, tmp_path: Path, capture: str, seed: int, batch: int = 64
) -> tuple[Any, Path, Workload]:
    table = create_documents(db)
    # the workload churns on purpose: heavy deletes and blanked rows are its normal traffic
    churn = "quality:\n  max_delete_fraction: 1.0\n  empty_text: delete\n"
    path = write_params(
        tmp_path / "ws",
        db.url,
        capture,
        extra=SETTINGS,
        source_extra="    format: text",
        quality=churn,
    )
    path.write_text(path.read_text().replace("  batch_size: 64\n", f"  batch_size: {batch}\n"))
    params = load_params(path)
    assert params.sync.batch_size == batch
    if capture == "changelog":
        source = SqlSource.open("docs", params.sources["docs"])
        Changelog(source, params.workspace.path).install()
        source.close()
    workload = HeadedWorkload(db.engine, table, seed=seed)
    workload.run(200)  # a table that already holds rows before the first sync
    return params, path, workload


def final_sync(params: Any, embedder: Any, batch: int | None = None) -> Any:
    """One whole pass in this process; `batch` overrides sync.batch_size for it."""
    if batch is not None:
        params = params.model_copy(
            update={"sync": params.sync.model_copy(update={"batch_size": batch})}
        )
    (one,) = open_syncs(params, embedder=embedder)
    try:
        return one.run()
    finally:
        one.source.close()


@pytest.mark.parametrize("capture", ["changelog", "cursor"])
def test_randomized_workload_converges(
    database: Database, tmp_path: Path, capture: str, embedder: Any
) -> None:
    params, _, workload = prepare(database, tmp_path, capture, workload_seed())
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
    chunks = assert_index_holds_rows(database, params, embedder)
    assert assert_index_matches(database, params, embedder) == chunks
    counts = workload.counts
    assert sum(counts.values()) >= OPERATIONS + 200
    assert min(counts.get(k, 0) for k in ("insert", "update", "soft_delete", "hard_delete")) > 50, (
        counts
    )
    assert chunks > len(index_keys(params)), "no row made several chunks"


def index_keys(params: Any) -> set[str]:
    from tests.support import index_chunks

    return set(index_chunks(params))


# Where a sync process dies inside a pass: (step, before or after it). `upsert` is the
# index write of new chunks (surplus chunks and deletes come after it); `advance`
# acknowledges the batch's changes and saves the capture position.
KILL_POINTS = (
    ("embed", "before"),  # keys captured and re-read, nothing written
    ("upsert", "after"),  # new chunks written, surplus chunks and deletes not yet
    ("advance", "before"),  # the index write is durable, the changes not acknowledged
    ("advance", "after"),  # acknowledged, the pass not finished
)
KILL_BATCH = 16  # sync.batch_size for the kill test: several batches in every pass
# the passes that recover after the kills, in this process: the batch size of the
# randomized test (each batch costs a quality-gate validation, so fewer is faster)
RECOVERY_BATCH = 64
# what a sync process imports, imported once by the forkserver: Great Expectations (the
# quality gate, seconds to import) besides the modules of forkserver_preload
PRELOAD = ["tests.integration.forkserver_preload", "great_expectations.expectations"]
FULL_READ_KILL = ("write", "after", 1)  # the first rows of a full re-read written, no more
BACKLOG = 40  # changes waiting when a sync process starts: more than two batches
DURING = 30  # changes made while it runs


def _sync_until_killed(params_path: str, point: tuple[str, str, int] | None, marker: str) -> None:
    """The body of a sync process: exactly what `ragtune sync --follow` runs, but with
    `point` = (step, "before" | "after", n) it SIGKILLs itself at the n-th call of step."""
    if point is not None:
        import dataclasses

        import ragtune.sync
        from ragtune.adapters.index.lance import LanceIndex

        name, when, nth = point
        steps = ragtune.sync.DIRECT_STEPS  # what a pass calls, unless given other steps
        original = LanceIndex.upsert if name == "upsert" else getattr(steps, name)
        calls = 0

        def die() -> None:
            Path(marker).write_text(f"{name} {when} {nth}")
            os.kill(os.getpid(), signal.SIGKILL)

        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == nth and when == "before":
                die()
            result = original(*args, **kwargs)
            if calls == nth and when == "after":
                die()
            return result

        if name == "upsert":
            LanceIndex.upsert = step  # type: ignore[method-assign]
        else:
            ragtune.sync.DIRECT_STEPS = dataclasses.replace(steps, **{name: step})
    sys.argv = ["ragtune", "sync", "--follow", "--params", params_path]
    from ragtune.cli import main

    main()


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
    seed = workload_seed()
    params, path, workload = prepare(database, tmp_path, capture, seed, batch=KILL_BATCH)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    rng = random.Random(seed)
    marker = tmp_path / "killed-at"

    def kill(point: tuple[str, str, int] | None) -> None:
        """Changes waiting, a sync process started, more changes; SIGKILL at `point`
        (the process kills itself there) or, for None, at a random moment."""
        workload.run(BACKLOG)
        marker.unlink(missing_ok=True)
        child = context.Process(
            target=_sync_until_killed, args=(str(path), point, str(marker)), daemon=True
        )
        child.start()
        try:
            workload.run(DURING, 0.004)
            if point is None:
                time.sleep(rng.uniform(0, 2.0))
                os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=180)
            assert not child.is_alive(), f"the sync process never reached {point}"
        finally:
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
                child.join(timeout=30)
        assert child.exitcode == -signal.SIGKILL
        if point is not None:
            assert marker.read_text() == " ".join(map(str, point))

    kill(FULL_READ_KILL)  # inside the first pass, which re-reads the whole table
    final_sync(params, embedder, RECOVERY_BATCH)  # a whole pass: the next ones consume changes
    # every point, on a pass's first or second batch as the seed has it, in an order the
    # seed decides: kills at chosen points only, so a seed replays the same kills
    schedule: list[tuple[str, str, int] | None] = [
        (name, when, 1 + (i + seed) % 2) for i, (name, when) in enumerate(KILL_POINTS)
    ]
    rng.shuffle(schedule)
    for point in schedule:
        kill(point)
    print(f"SIGKILLs: {[FULL_READ_KILL, *schedule]}, workload {workload.counts}")
    final_sync(params, embedder, RECOVERY_BATCH)
    assert_index_holds_rows(database, params, embedder)
    assert_index_matches(database, params, embedder)
