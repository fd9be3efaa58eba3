"""The `backfill` flow on a real Dask LocalCluster of two worker processes, under a real
(temporary) Prefect server: its index is exactly a single-process full sync's.

Both workspaces read the same SQLite source (capture: cursor, so reading consumes nothing).
The quality gate is off: it is the same code in both and not what is tested here.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.adapters.index.lance import LanceIndex
from ragtune.adapters.state import StateStore
from ragtune.config import Params, load_params
from ragtune.workspace import open_syncs
from tests.support import Database, assert_index_matches, create_documents, write_params

ROWS = 60
WORDS = ["index", "vector", "chunk", "source", "embed", "worker", "cluster", "batch", "query"]
COMPARED = ["id", "source", "key", "chunk", "text", "content_hash", "chunk_hash", "tenant"]


def fill_source(db: Database) -> None:
    """ROWS documents from a few words to several chunks long; equal lengths included."""
    table = create_documents(db)
    pick = random.Random(7)
    stamp = dt.datetime(2024, 5, 1, 12, 0, 0)
    rows = [
        {
            "id": i,
            "title": f"Document {i}",
            "body": " ".join(pick.choice(WORDS) for _ in range(pick.choice([4, 4, 25, 90, 380]))),
            "section": pick.choice(["guide", "faq", "api"]),
            "tenant": "acme" if i % 7 == 0 else None,
            "updated_at": stamp + dt.timedelta(seconds=i),
        }
        for i in range(ROWS)
    ]
    with db.engine.begin() as c:
        c.execute(table.insert(), rows)


def workspace(db: Database, folder: Path) -> Path:
    path = write_params(folder, db.url, capture="cursor")
    path.write_text(
        path.read_text() + "embeddings:\n  batch_size: 16\nquality:\n  enabled: false\n"
    )
    return path


def index_rows(params: Params) -> dict[str, Any]:
    """Every chunk of the index, by id: compared columns, metadata, vectors."""
    index = LanceIndex(params.index)
    try:
        rows = index.table.to_arrow().sort_by("id")
    finally:
        index.close()
    columns = {name: rows[name].to_pylist() for name in [*COMPARED, "metadata", "meta_tags"]}
    columns["vector"] = np.asarray(rows["vector"].to_pylist(), dtype=np.float32)
    return columns


def test_backfill_on_two_dask_workers_equals_a_single_process_sync(
    prefect_server: None, sqlite_db: Database, tmp_path: Path
) -> None:
    from flows.backfill import backfill

    fill_source(sqlite_db)
    dask_params = load_params(workspace(sqlite_db, tmp_path / "dask"))
    plain_params = load_params(workspace(sqlite_db, tmp_path / "plain"))

    state = backfill(str(tmp_path / "dask" / "params.yaml"), batch_size=32, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()

    # float sums depend on how many threads split them: the workers run one torch thread
    # each, so the single process does too (with two, a vector can differ in the last bits)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    (plain,) = open_syncs(plain_params)
    try:
        counts = plain.run(full=True)
    finally:
        plain.source.close()
        torch.set_num_threads(threads)

    # the same work was done, and the dask index is the source's current content
    assert result["sources"]["docs"] == counts.summary()
    assert counts.upserted_docs == ROWS and counts.embedded_chunks > ROWS  # some multi-chunk
    assert_index_matches(sqlite_db, dask_params, plain.embedder)

    # the two indexes hold the same chunks; vectors bit for bit (see ragtune.backfill)
    on_dask, single = index_rows(dask_params), index_rows(plain_params)
    for name in [*COMPARED, "metadata", "meta_tags"]:
        assert on_dask[name] == single[name], name
    assert on_dask["vector"].shape == (counts.written_chunks, 384)
    assert np.array_equal(on_dask["vector"], single["vector"])

    # and the same source position
    dask_state = StateStore(dask_params.workspace.path).load("docs")
    plain_state = StateStore(plain_params.workspace.path).load("docs")
    assert dask_state.watermark == plain_state.watermark is not None
    assert dask_state.needs_full is plain_state.needs_full is False
    assert dask_state.reconciled_at is not None and dask_state.as_of is not None

    # two single-threaded worker processes, each embedding batches with one model load
    assert len(result["cluster"]) == 2 and set(result["cluster"].values()) == {1}
    workers = result["workers"]
    assert set(workers) == set(result["cluster"])
    pids = {w["pid"] for w in workers.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(w["batches"] >= 1 and w["model_loads"] == 1 for w in workers.values())
    assert sum(w["chunks"] for w in workers.values()) == counts.embedded_chunks
    groups = -(-counts.embedded_chunks // 16)
    assert sum(w["batches"] for w in workers.values()) == -(-groups // 2)  # 2 groups a batch

    # the UI shows each batch as a completed task of this flow run, and the progress
    flow_run_id = state.state_details.flow_run_id
    embedded = [r for r in task_runs(flow_run_id) if r.name.startswith("embed_batch")]
    assert len(embedded) == -(-groups // 2)
    assert all(r.state is not None and r.state.is_completed() for r in embedded)
    (bar,) = progress_artifacts(flow_run_id)
    assert bar.data == 100.0 and "backfill of docs" in (bar.description or "")


def task_runs(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    where = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=where)


def progress_artifacts(flow_run_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    where = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        type=ArtifactFilterType(any_=["progress"]),
    )
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=where)
