"""Tracking: what the MLflow adapter's calls cost on a sqlite store, and how fast an
unreachable tracking server is reported.

    .venv/bin/python bench/tracking.py [--trials 5]

1. new store      - `Tracker(...)` on a new sqlite file: MLflow creates its schema;
2. existing store - `Tracker(...)` again on that file;
3. register       - a pipeline run with a nested train run that logs a small adapter
                    folder and registers it as a model version;
4. unreachable    - `Tracker(...)` on a closed port, over http and PostgreSQL: the time to
                    the one-line TrackingError (the tests check the error, not its speed).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: F401  (the quiet, offline environment)

from ragtune.adapters.tracking import LINEAGE_TAGS, Tracker, sqlite_uri
from ragtune.errors import TrackingError


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _register(tracker: Tracker, folder: Path, seed: str) -> None:
    adapter = folder / seed
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(f'{{"r": 8, "seed": "{seed}"}}')
    (adapter / "adapter_model.safetensors").write_bytes(seed.encode() * 16)
    lineage = {key: f"{key.rsplit('.', 1)[1]}-{seed}" for key in LINEAGE_TAGS}
    with tracker.run("pipeline") as parent, tracker.run("train", parent_run_id=parent) as run_id:
        tracker.log_metrics(run_id, {"token_f1": 0.3})
        tracker.log_artifacts(run_id, adapter, "adapter")
        tracker.register(run_id, "adapter", lineage)


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _unreachable(uri: str) -> float:
    start = time.perf_counter()
    try:
        Tracker(uri, None)
    except TrackingError:
        return time.perf_counter() - start
    raise RuntimeError(f"{uri} answered: expected it unreachable")


def run(trials: int = 5) -> dict[str, Any]:
    times: dict[str, list[float]] = {
        "new_store_s": [],
        "existing_store_s": [],
        "register_s": [],
        "unreachable_http_s": [],
        "unreachable_postgresql_s": [],
    }
    for trial in range(trials):
        folder = Path(tempfile.mkdtemp(prefix="ragtune-bench-tracking-"))
        uri, artifacts = sqlite_uri(folder / "mlflow.db"), str(folder / "artifacts")
        tracker, seconds = _timed(Tracker, uri, artifacts)
        times["new_store_s"].append(seconds)
        times["existing_store_s"].append(_timed(Tracker, uri, artifacts)[1])
        times["register_s"].append(_timed(_register, tracker, folder / "adapters", f"t{trial}")[1])
        times["unreachable_http_s"].append(_unreachable(f"http://127.0.0.1:{_closed_port()}"))
        times["unreachable_postgresql_s"].append(
            _unreachable(f"postgresql://ragtune:secret@127.0.0.1:{_closed_port()}/mlflow")
        )
    return {
        name: {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
        for name, values in times.items()
    } | {"trials": trials}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    print(json.dumps(run(parser.parse_args().trials), indent=2))
