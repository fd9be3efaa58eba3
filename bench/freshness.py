"""Freshness: seconds from a committed single-row update to search returning it.

PostgreSQL with `ragtune sync --follow` (woken by NOTIFY), and SQLite with polling, each
with the follower as a separate process, exactly as a user runs it. `postgresql_notify_only`
sets the poll an hour apart, so NOTIFY alone explains each lag; then the server drops the
follower's LISTEN connection and `after_dropped_listen` is the lag of the changes that
follow (the first waits for the follower to listen again).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import ROOT, django_docs, install_changelog, p50_p95, workspace_params

from ragtune.adapters.index.base import SearchFilter
from ragtune.adapters.index.lance import LanceIndex
from ragtune.demo import INSERT, TABLE_DDL
from ragtune.workspace import open_syncs

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def run(trials: int = 30, poll_interval_s: float = 1.0) -> dict[str, Any]:
    rows = django_docs(150, seed=3)
    results: dict[str, Any] = {}
    try:
        with _pg_database() as url:
            results["postgresql"] = _measure(url, rows, trials, poll_interval_s)
        with _pg_database() as url:
            results["postgresql_notify_only"] = _measure(url, rows, 10, 3600, after_drop=5)
    except sa.exc.OperationalError as exc:
        results["postgresql"] = {"error": str(exc).splitlines()[0]}
    folder = Path(tempfile.mkdtemp(prefix="ragtune-bench-fresh-"))
    (folder / "docs.db").touch()
    results["sqlite"] = _measure(f"sqlite:///{folder / 'docs.db'}", rows, trials, poll_interval_s)
    results["poll_interval_s"] = poll_interval_s
    return results


@contextmanager
def _pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"ragtune_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{PG}/{name}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def _measure(
    url: str, rows: list[Any], trials: int, poll_interval_s: float, after_drop: int = 0
) -> dict[str, Any]:
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql(
            TABLE_DDL.replace("(strftime('%Y-%m-%d %H:%M:%f', 'now'))", "CURRENT_TIMESTAMP")
        )
        c.execute(sa.text(INSERT), [r.as_row() for r in rows])
    folder = Path(tempfile.mkdtemp(prefix="ragtune-bench-ws-"))
    params = workspace_params(folder, url, poll_interval_s)
    install_changelog(params)
    (sync,) = open_syncs(params)
    sync.run()
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ragtune",
            "sync",
            "--follow",
            "--params",
            str(folder / "params.yaml"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    index = LanceIndex(params.index)
    lags: list[float | None] = []
    dropped: list[float | None] = []
    try:
        _update_and_wait(engine, index, rows[0].id, "warmup", 120)  # the follower has started
        for trial in range(trials):
            lag = _update_and_wait(
                engine,
                index,
                rows[(trial * 7) % len(rows)].id,
                f"fresh{trial}x{uuid.uuid4().hex[:6]}",
                30,
            )
            lags.append(lag)
            time.sleep(0.2 + (trial % 5) * 0.13)  # spread commits across the poll cycle
        if after_drop:
            with engine.connect() as c:  # the server drops the follower's LISTEN link
                c.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
                )
            for trial in range(after_drop):
                token = f"relisten{trial}x{uuid.uuid4().hex[:6]}"
                dropped.append(_update_and_wait(engine, index, rows[trial].id, token, 60))
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=60)
        engine.dispose()
    measured: dict[str, Any] = {
        "lag_s": p50_p95([x for x in lags if x is not None]),
        "missed": sum(x is None for x in lags),
    }
    if after_drop:
        measured["after_dropped_listen_s"] = [None if x is None else round(x, 3) for x in dropped]
    return measured


def _update_and_wait(
    engine: sa.Engine, index: LanceIndex, key: str, token: str, timeout_s: float
) -> float | None:
    with engine.begin() as c:
        c.execute(
            sa.text("UPDATE documents SET body = body || :t WHERE id = :k"),
            {"t": f"\n\n{token}", "k": key},
        )
    committed = time.perf_counter()
    while time.perf_counter() - committed < timeout_s:
        if any(h.key == key for h in index.text_search(token, 3, SearchFilter())):
            return time.perf_counter() - committed
        time.sleep(0.01)
    return None


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(run())
