"""`sync --follow`: NOTIFY wake-ups on PostgreSQL, and a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.index.lance import LanceIndex
from ragtune.adapters.sources import SqlSource
from ragtune.config import load_params
from ragtune.follow import follow
from ragtune.workspace import open_syncs
from tests.integration.workload import Workload
from tests.support import Database, assert_index_matches, create_documents, write_params

CHURN = "quality:\n  max_delete_fraction: 1.0\n  empty_text: delete\n"


def installed(db: Database, tmp_path: Path, extra: str = "") -> tuple[Any, Path, sa.Table]:
    table = create_documents(db)
    path = write_params(tmp_path / "ws", db.url, extra=extra, quality=CHURN)
    params = load_params(path)
    source = SqlSource.open("docs", params.sources["docs"])
    Changelog(source, params.workspace.path).install()
    source.close()
    return params, path, table


def wait_for_key(params: Any, key: str, timeout_s: float) -> bool:
    index = LanceIndex(params.index)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if index.table is not None and index.ledger("docs", [key]):
            return True
        time.sleep(0.01)
    return False


def wait_for_first_pass(params: Any, timeout_s: float) -> bool:
    index = LanceIndex(params.index)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if index.table is not None and index.keys("docs"):
            return True
        time.sleep(0.05)
    return False


def test_postgres_notify_wakes_the_follower(
    postgres_db: Database, tmp_path: Path, embedder: Any
) -> None:
    """With the next poll an hour away, only a NOTIFY can explain a change being indexed.

    (How soon: bench/freshness.py measures NOTIFY's commit-to-searchable lag, and after a
    dropped LISTEN link, `postgresql_notify_only`.)"""
    params, _, table = installed(postgres_db, tmp_path, extra="  poll_interval_s: 3600\n")
    with postgres_db.engine.begin() as c:
        c.execute(table.insert().values(id=1, title="first", body="before following"))
    syncs = open_syncs(params, embedder=embedder)
    stop = threading.Event()
    follower = threading.Thread(
        target=follow, args=(syncs, params.sync.poll_interval_s, stop), daemon=True
    )
    follower.start()
    try:
        assert wait_for_key(params, "1", 120), "the first pass did not index row 1"
        for key in range(2, 5):
            with postgres_db.engine.begin() as c:
                c.execute(table.insert().values(id=key, title=f"row {key}", body="arrives live"))
            assert wait_for_key(params, str(key), 120), f"row {key} not indexed: no NOTIFY"
        # the server drops the LISTEN connection: the follower must listen again by itself
        with postgres_db.engine.connect() as c:
            dropped = c.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
            ).all()
        assert dropped == [(True,)]  # exactly the follower's LISTEN connection
        with postgres_db.engine.begin() as c:
            c.execute(table.insert().values(id=99, title="after", body="the connection dropped"))
        assert wait_for_key(params, "99", 120), "not re-listening after a dropped link"
        with postgres_db.engine.begin() as c:
            c.execute(table.insert().values(id=100, title="later", body="notified again"))
        assert wait_for_key(params, "100", 120), "no NOTIFY after listening again"
    finally:
        stop.set()
        follower.join(timeout=30)
    assert not follower.is_alive()


def test_ctrl_c_stops_cleanly_without_losing_a_change(
    sqlite_db: Database, tmp_path: Path, embedder: Any
) -> None:
    params, path, table = installed(sqlite_db, tmp_path)
    workload = Workload(sqlite_db.engine, table, seed=7)
    workload.run(100)
    env = {**os.environ, "COLUMNS": "200"}
    follower = subprocess.Popen(
        [sys.executable, "-m", "ragtune", "sync", "--follow", "--params", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert wait_for_first_pass(params, 120), "the follower indexed nothing in 120 s"
        stop = threading.Event()
        writer = threading.Thread(target=workload.run, args=(400, 0.002, stop))
        writer.start()
        time.sleep(1.0)
        follower.send_signal(signal.SIGINT)  # Ctrl-C while changes keep arriving
        _, err = follower.communicate(timeout=120)
        stop.set()
        writer.join()
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert "stopped cleanly" in err
    workload.run(50)  # changes made after the stop are not lost either
    (one,) = open_syncs(params, embedder=embedder)
    one.run()
    assert_index_matches(sqlite_db, params, embedder)
