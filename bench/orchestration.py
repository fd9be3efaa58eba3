"""Orchestration overhead: a `refresh_index` run with nothing to do, three ways.

    .venv/bin/python bench/orchestration.py [--runs 5]

On one small workspace (200 synced rows, SQLite, changelog capture), with `ragtune up`
running (Prefect server, MLflow server, the served deployments):

1. direct   - `SourceSync.run()` in this process, as `ragtune sync --once` does;
2. flow     - the `refresh_index` flow called in this process against the Prefect server
              (task runs, state reports, the freshness artifact);
3. deployed - `run_deployment("refresh_index/refresh-index")` through the served
              deployment: a flow run created by the API, picked up by the serving process
              (it polls every PREFECT_RUNNER_POLL_FREQUENCY seconds, set to 1 here), run in
              a fresh subprocess, until the API reports it Completed.

Each is timed over N runs, alternating, after one warm-up each; medians are printed, and
the deployed run is split into "waiting to start" (scheduled -> running) and "running"
(the subprocess, from its start to Completed).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, install_changelog, workspace_params  # sets the quiet environment

ROWS = 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_workspace(folder: Path) -> Path:
    database = folder / "docs.db"
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT, body TEXT, url TEXT, "
            "section TEXT)"
        )
        db.executemany(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"Document {i}", f"Body of document {i} about caching and views.", "/", "a")
                for i in range(ROWS)
            ],
        )
    params = workspace_params(folder / "ws", f"sqlite:///{database}")
    path = folder / "ws" / "params.yaml"
    path.write_text(
        path.read_text().replace("sync:\n", "sync:\n  interval_s: 86400\n")  # no scheduled runs
        + f"services:\n  prefect_port: {free_port()}\n  mlflow_port: {free_port()}\n"
        + "  start_timeout_s: 300\n"
    )
    install_changelog(params)
    return path


def ragtune(*args: str, params: Path) -> None:
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    env.pop("PREFECT_API_URL", None)
    subprocess.run(
        [str(Path(sys.executable).with_name("ragtune")), *args, "--params", str(params)],
        check=True,
        env=env,
    )


def run(runs: int = 5) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ragtune-bench-orchestration-"))
    params_path = make_workspace(folder)
    from ragtune.config import load_params
    from ragtune.workspace import open_embedder, open_syncs

    params = load_params(params_path)
    embedder = open_embedder(params)
    (sync,) = open_syncs(params, embedder=embedder)
    sync.run()  # the backfill: every later run has nothing to do
    ragtune("up", params=params_path)
    try:
        api = f"http://{params.services.host}:{params.services.prefect_port}/api"
        os.environ["PREFECT_API_URL"] = api
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        from flows.refresh_index import refresh_index

        def direct() -> None:
            counts = sync.run()
            assert counts.changes == 0, counts

        def flow() -> None:
            summary = refresh_index(str(params_path))
            assert summary["docs"]["changes"] == 0, summary

        phases: dict[str, list[float]] = {"waiting": [], "running": []}

        def deployed() -> None:
            flow_run: Any = run_deployment(
                "refresh_index/refresh-index", timeout=300, poll_interval=0.2
            )
            assert flow_run.state.is_completed(), flow_run.state
            with get_client(sync_client=True) as client:
                done = client.read_flow_run(flow_run.id)
            assert done.start_time is not None and done.end_time is not None
            phases["waiting"].append((done.start_time - done.created).total_seconds())
            phases["running"].append((done.end_time - done.start_time).total_seconds())

        ways = {"direct": direct, "flow": flow, "deployed": deployed}
        for fn in ways.values():
            fn()  # warm-up
        phases = {"waiting": [], "running": []}
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(runs):
            for name, fn in ways.items():
                start = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - start)
    finally:
        ragtune("down", params=params_path)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "rows": ROWS,
        "runs": runs,
        "seconds": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "deployed_phases_median_s": {k: round(statistics.median(v), 3) for k, v in phases.items()},
        "flow_over_direct_s": round(medians["flow"] - medians["direct"], 3),
        "deployed_over_direct_s": round(medians["deployed"] - medians["direct"], 3),
        "runner_poll_s": 1,
        "workspace": str(folder),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    out = run(args.runs)
    print(json.dumps(out, indent=2))
    m = out["median_s"]
    print(
        f"refresh_index with nothing to do ({ROWS} rows): direct {m['direct']:.3f} s, "
        f"flow in-process {m['flow']:.3f} s, served deployment {m['deployed']:.3f} s "
        f"(waiting {out['deployed_phases_median_s']['waiting']:.2f} s + running "
        f"{out['deployed_phases_median_s']['running']:.2f} s); medians of {out['runs']}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
