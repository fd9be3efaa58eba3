"""The `refresh_index` flow under a real (temporary) Prefect server."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.index.lance import LanceIndex
from ragtune.adapters.sources import SqlSource
from ragtune.adapters.state import StateStore
from ragtune.config import load_params
from tests.support import Database, assert_index_matches, create_documents, write_params


def make_workspace(db: Database, tmp_path: Path, rows: int = 12) -> tuple[Path, sa.Table]:
    table = create_documents(db)
    with db.engine.begin() as c:
        c.execute(
            table.insert(),
            [
                {"id": i, "title": f"T{i}", "body": f"Body number {i}.", "section": "a"}
                for i in range(rows)
            ],
        )
    path = write_params(
        tmp_path / "ws", db.url, extra="  retries: 1\n  retry_delay_s: 0\n  interval_s: 45\n"
    )
    params = load_params(path)
    source = SqlSource.open("docs", params.sources["docs"])
    Changelog(source, params.workspace.path).install()
    source.close()
    return path, table


def test_deployment_runs_on_the_interval_from_params(sqlite_db: Database, tmp_path: Path) -> None:
    from prefect.client.schemas.schedules import IntervalSchedule

    from flows.refresh_index import build_deployment

    path, _ = make_workspace(sqlite_db, tmp_path)
    deployment = build_deployment(path)
    schedule = deployment.schedules[0].schedule
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.interval == dt.timedelta(seconds=45)
    assert deployment.parameters == {"params_path": str(path.resolve()), "follow_s": 0.0}
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert deployment.name == "refresh-index"


def test_continuous_mode_follows_until_the_next_run(sqlite_db: Database, tmp_path: Path) -> None:
    from flows.refresh_index import build_deployment

    path, _ = make_workspace(sqlite_db, tmp_path)
    text = path.read_text() + "services:\n  refresh: continuous\n"
    path.write_text(text)
    assert build_deployment(path).parameters["follow_s"] == 45.0


def test_flow_syncs_and_retries_are_configured(
    prefect_server: None, sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    from flows.refresh_index import refresh_index, step_tasks

    path, table = make_workspace(sqlite_db, tmp_path)
    params = load_params(path)
    assert {step_tasks(params).write.retries, step_tasks(params).capture.retries} == {1}

    state = refresh_index(str(path), return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["docs"]["upserted_docs"] == 12
    assert_index_matches(sqlite_db, params, embedder)

    with sqlite_db.engine.begin() as c:
        c.execute(table.delete().where(table.c.id == 3))
        c.execute(table.update().where(table.c.id == 4).values(body="changed"))
    summary = refresh_index(str(path))
    assert summary["docs"]["deleted_docs"] == 1 and summary["docs"]["upserted_docs"] == 1
    assert_index_matches(sqlite_db, params, embedder)


FOLLOW_S = 3.0  # the late row lands as following starts; a pass takes well under this


def test_a_following_run_picks_up_changes_and_leaves_a_freshness_table(
    prefect_server: None, sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.refresh_index import refresh_index

    path, table = make_workspace(sqlite_db, tmp_path)
    params = load_params(path)

    state_store = StateStore(params.workspace.path)
    inserted, returned = threading.Event(), threading.Event()

    def insert_after_the_first_pass() -> None:
        """The late row lands once the run's first pass has finished: only following
        can pick it up."""
        while not any(r["finished_at"] for r in state_store.last_runs(1000)):
            if returned.is_set():
                return
            time.sleep(0.02)
        with sqlite_db.engine.begin() as c:
            c.execute(
                table.insert(), [{"id": 99, "title": "Late", "body": "Late row.", "section": "a"}]
            )
        inserted.set()

    writer = threading.Thread(target=insert_after_the_first_pass)
    writer.start()
    started = time.monotonic()
    try:
        state = refresh_index(str(path), follow_s=FOLLOW_S, return_state=True)
    finally:
        returned.set()
        writer.join()
    assert inserted.is_set(), "the first pass never finished"
    assert state.is_completed(), state.message
    assert time.monotonic() - started >= FOLLOW_S
    first_pass = min(state_store.last_runs(1000), key=lambda r: r["id"])
    assert first_pass["counts"]["upserted_docs"] == 12
    assert state.result()["docs"]["upserted_docs"] == 13  # 12 in the first pass, 1 followed
    assert_index_matches(sqlite_db, params, embedder)

    # this run's own artifacts: the server is shared with the other flow tests
    mine = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
    )
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=mine)}
    assert "ragtune-freshness" in keys


def test_bad_config_fails_the_run_with_a_clear_message(
    prefect_server: None, sqlite_db: Database, tmp_path: Path
) -> None:
    from flows.refresh_index import refresh_index

    create_documents(sqlite_db)
    path = write_params(tmp_path / "ws", sqlite_db.url, table="no_such_table")
    state = refresh_index(str(path), return_state=True)
    assert state.is_failed()
    assert "table 'no_such_table' not found" in state.message
    assert not (tmp_path / "ws" / ".ragtune" / "index").exists()


def test_one_run_per_source_at_a_time(
    prefect_server: None, sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    from flows.refresh_index import refresh_index

    path, _ = make_workspace(sqlite_db, tmp_path, rows=40)
    states: list[Any] = []
    threads = [
        threading.Thread(target=lambda: states.append(refresh_index(str(path), return_state=True)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(states) == 2 and all(s.is_completed() for s in states), [s.message for s in states]
    runs = sorted(StateStore(load_params(path).workspace.path).last_runs(), key=lambda r: r["id"])
    assert len(runs) == 2
    assert runs[0]["finished_at"] <= runs[1]["started_at"], "two syncs of one source overlapped"
    assert sum(r["counts"]["upserted_docs"] for r in runs) == 40


def test_a_refused_batch_fails_the_run_and_the_override_lets_it_through(
    prefect_server: None, sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    from flows.refresh_index import refresh_index

    path, table = make_workspace(sqlite_db, tmp_path, rows=40)
    assert refresh_index(str(path), return_state=True).is_completed()
    with sqlite_db.engine.begin() as c:
        c.execute(table.delete().where(table.c.id < 20))  # half the indexed documents
    state = refresh_index(str(path), return_state=True)
    assert state.is_failed()
    assert "guarded_delete_fraction" in state.message and "observed 0.5 > max 0.2" in state.message
    state = refresh_index(str(path), allow_mass_delete=True, return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["docs"]["deleted_docs"] == 20
    assert_index_matches(sqlite_db, load_params(path), embedder)


def break_queue(db: Database, path: Path) -> tuple[str, str]:
    """Rename a column of the source's changelog queue: every queue read now fails."""
    source = SqlSource.open("docs", load_params(path).sources["docs"])
    queue = Changelog(source, load_params(path).workspace.path).table_name
    source.close()
    with db.engine.begin() as c:
        c.exec_driver_sql(f'ALTER TABLE "{queue}" RENAME COLUMN op TO op_away')
    return queue, f'ALTER TABLE "{queue}" RENAME COLUMN op_away TO op'


def pending_changes(path: Path) -> int:
    source = SqlSource.open("docs", load_params(path).sources["docs"])
    try:
        return Changelog(source, load_params(path).workspace.path).count()
    finally:
        source.close()


def test_a_failed_capture_is_retried_and_the_index_converges(
    prefect_server: None, sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateName,
    )

    from flows.refresh_index import refresh_index

    path, table = make_workspace(sqlite_db, tmp_path)
    path.write_text(path.read_text().replace("retry_delay_s: 0", "retry_delay_s: 3"))
    assert refresh_index(str(path), return_state=True).is_completed()
    with sqlite_db.engine.begin() as c:
        c.execute(table.insert(), [{"id": 50 + i, "title": "New", "body": "b"} for i in range(3)])
    _, heal = break_queue(sqlite_db, path)

    healed = threading.Event()

    def heal_after_the_first_failure() -> None:
        waiting = TaskRunFilter(
            state=TaskRunFilterState(name=TaskRunFilterStateName(any_=["AwaitingRetry"]))
        )
        with get_client(sync_client=True) as client:
            for _ in range(1200):  # bounded: at most ~2 minutes
                if any(
                    r.name.startswith("capture")
                    for r in client.read_task_runs(task_run_filter=waiting)
                ):
                    break
                time.sleep(0.1)
        with sqlite_db.engine.begin() as c:
            c.exec_driver_sql(heal)
        healed.set()

    healer = threading.Thread(target=heal_after_the_first_failure)
    healer.start()
    state = refresh_index(str(path), return_state=True)
    healer.join()
    assert healed.is_set()
    assert state.is_completed(), state.message
    assert state.result()["docs"]["upserted_docs"] == 3
    assert pending_changes(path) == 0
    assert_index_matches(sqlite_db, load_params(path), embedder)


def test_with_the_source_still_down_the_run_fails_and_keeps_the_changes(
    prefect_server: None, sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    from flows.refresh_index import refresh_index

    path, table = make_workspace(sqlite_db, tmp_path)
    assert refresh_index(str(path), return_state=True).is_completed()
    with sqlite_db.engine.begin() as c:
        c.execute(table.insert(), [{"id": 50 + i, "title": "New", "body": "b"} for i in range(3)])
    _, heal = break_queue(sqlite_db, path)
    state = refresh_index(str(path), return_state=True)  # sync.retries 1: two reads fail
    assert state.is_failed(), "the run ended Completed with changes unsynced"
    assert "no such column" in state.message
    with sqlite_db.engine.begin() as c:
        c.exec_driver_sql(heal)
    assert pending_changes(path) == 3
    assert "50" not in LanceIndex(load_params(path).index).keys("docs")
