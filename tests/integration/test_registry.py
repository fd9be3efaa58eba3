"""The MLflow adapter on a real sqlite tracking store: runs, registry, aliases, download.

Creating an MLflow sqlite schema costs seconds, so the module creates one blank store and
each test gets its own copy of it: no test sees another's runs, versions or aliases.
(How long the tracking calls take: bench/tracking.py.)
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

import shutil
import socket
from pathlib import Path

import mlflow
import pytest

from ragtune.adapters.tracking import LINEAGE_TAGS, MODEL_NAME, Tracker, sqlite_uri
from ragtune.core.promotion import decide
from ragtune.errors import RagtuneError, TrackingError

pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")

METRIC = "token_f1"
BASE_SCORES = {METRIC: 0.20}


@pytest.fixture(scope="module")
def blank_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema and the ragtune experiment, nothing else."""
    folder = tmp_path_factory.mktemp("mlflow-blank")
    Tracker(sqlite_uri(folder / "mlflow.db"), str(folder / "artifacts"))
    return folder / "mlflow.db"


@pytest.fixture
def store(blank_store: Path, tmp_path: Path) -> Path:
    """This test's own copy of the blank store."""
    folder = tmp_path / "mlflow"
    folder.mkdir()
    shutil.copyfile(blank_store, folder / "mlflow.db")
    return folder


@pytest.fixture
def tracker(store: Path) -> Tracker:
    return Tracker(sqlite_uri(store / "mlflow.db"), str(store / "artifacts"))


def _adapter(folder: Path, seed: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(f'{{"r": 8, "seed": "{seed}"}}')
    (folder / "adapter_model.safetensors").write_bytes(seed.encode() * 16)
    return folder


def _lineage(seed: str) -> dict[str, str]:
    return {key: f"{key.rsplit('.', 1)[1]}-{seed}" for key in LINEAGE_TAGS}


def _train(tracker: Tracker, tmp: Path, seed: str, score: float) -> tuple[str, str]:
    """A pipeline run with a nested train run that logs an adapter; returns (run, version)."""
    with tracker.run("pipeline") as parent, tracker.run("train", parent_run_id=parent) as run_id:
        tracker.log_metrics(run_id, {METRIC: score})
        tracker.log_artifacts(run_id, _adapter(tmp / seed, seed), "adapter")
        version = tracker.register(run_id, "adapter", _lineage(seed))
    return run_id, version


def _per_question(metrics: dict[str, float]) -> dict[str, list[float | None]]:
    """A run's score as the same score on each of 5 questions (what `decide` compares)."""
    return {name: [value] * 5 for name, value in metrics.items()}


def _promote_if_better(tracker: Tracker, version: str, run_id: str) -> bool:
    """What the pipeline does after evaluation: champion alias only when `decide` says so."""
    candidate = _per_question(tracker.run_info(run_id)["metrics"])
    current = tracker.champion()
    champion = _per_question(tracker.run_info(current["run_id"])["metrics"]) if current else None
    decision = decide(candidate, champion, _per_question(BASE_SCORES), METRIC, margin=0.02)
    tracker.set_alias("champion" if decision.promote else "challenger", version)
    tracker.tag_version(version, "ragtune.promotion", decision.reason)
    return decision.promote


def test_nested_run_carries_parent_and_ends_finished(tracker: Tracker) -> None:
    with tracker.run("pipeline") as parent:
        with tracker.run("train", parent_run_id=parent, tags={"stage": "train"}) as child:
            pass
        assert tracker.run_info(parent)["status"] == "RUNNING"
    info = tracker.run_info(child)
    assert info["tags"]["mlflow.parentRunId"] == parent
    assert info["tags"]["mlflow.runName"] == "train"
    assert info["tags"]["stage"] == "train"
    assert info["status"] == "FINISHED"
    assert tracker.run_info(parent)["status"] == "FINISHED"


def test_run_ends_failed_on_exception(tracker: Tracker) -> None:
    with pytest.raises(RuntimeError, match="boom"), tracker.run("broken") as run_id:
        raise RuntimeError("boom")
    assert tracker.run_info(run_id)["status"] == "FAILED"


def test_params_are_flattened_and_metrics_kept_per_step(tracker: Tracker) -> None:
    with tracker.run("train") as run_id:
        tracker.log_params(
            run_id, {"lora": {"r": 8, "alpha": 16.0}, "base": "tiny", "note": "x" * 10_000}
        )
        for step, loss in enumerate([2.0, 1.5, 1.25]):
            tracker.log_metrics(run_id, {"loss": loss}, step=step)
        tracker.set_tags(run_id, {"ragtune.data_version": "d1"})
    info = tracker.run_info(run_id)
    assert info["params"]["lora.r"] == "8"
    assert info["params"]["lora.alpha"] == "16.0"
    assert info["params"]["base"] == "tiny"
    assert info["params"]["note"].endswith("...[truncated]")
    assert len(info["params"]["note"]) == 6000
    assert info["metrics"]["loss"] == 1.25
    assert info["tags"]["ragtune.data_version"] == "d1"
    history = tracker.client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.5), (2, 1.25)]


def test_champion_moves_only_when_decide_passes(tracker: Tracker, tmp_path: Path) -> None:
    assert tracker.champion() is None

    first_run, first = _train(tracker, tmp_path, "first", score=0.40)
    assert tracker.champion() is None  # registered, not yet promoted
    assert _promote_if_better(tracker, first, first_run)
    champion = tracker.champion()
    assert champion is not None
    assert champion["version"] == first

    worse_run, worse = _train(tracker, tmp_path, "worse", score=0.38)
    assert not _promote_if_better(tracker, worse, worse_run)
    champion = tracker.champion()
    assert champion is not None
    assert champion["version"] == first
    assert champion["run_id"] == first_run
    assert tracker.version_info(worse)["aliases"] == ["challenger"]
    reason = tracker.version_info(worse)["tags"]["ragtune.promotion"]
    assert "does not improve on champion by more than margin 0.02" in reason

    better_run, better = _train(tracker, tmp_path, "better", score=0.45)
    assert _promote_if_better(tracker, better, better_run)
    champion = tracker.champion()
    assert champion is not None
    assert champion["version"] == better
    assert champion["tags"]["ragtune.data_version"] == "data_version-better"
    assert set(LINEAGE_TAGS) <= set(champion["tags"])
    assert tracker.version_info(first)["aliases"] == []
    assert tracker.version_info(worse)["aliases"] == ["challenger"]

    listed = [v["version"] for v in tracker.versions()]
    assert listed == sorted(listed, key=int, reverse=True)
    assert listed.index(better) < listed.index(worse) < listed.index(first)


def test_register_keeps_lineage_and_download_returns_the_files(
    tracker: Tracker, tmp_path: Path
) -> None:
    run_id, version = _train(tracker, tmp_path, "download", score=0.3)

    info = tracker.version_info(version)
    assert info["name"] == MODEL_NAME
    assert info["run_id"] == run_id
    assert info["tags"] == _lineage("download")

    folder = tracker.download(version, tmp_path / "fetched")
    original = tmp_path / "download"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in original.iterdir())
    for path in original.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()
    with pytest.raises(FileExistsError):
        tracker.download(version, tmp_path / "fetched")


def test_second_tracker_reuses_the_experiment_and_leaves_global_uri_alone(
    tracker: Tracker, store: Path
) -> None:
    again = Tracker(tracker.tracking_uri, str(store / "artifacts"))
    assert again.experiment_id == tracker.experiment_id
    assert mlflow.get_tracking_uri() != tracker.tracking_uri


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "template", ["http://127.0.0.1:{port}", "postgresql://ragtune:s3cret@127.0.0.1:{port}/mlflow"]
)
def test_unreachable_server_fails_fast_without_leaking_the_password(template: str) -> None:
    uri = template.format(port=_closed_port())
    with pytest.raises(TrackingError, match="is unreachable") as raised:
        Tracker(uri, None)
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)


def test_bad_uri_is_a_ragtune_error() -> None:
    with pytest.raises(RagtuneError, match="nosuch://nowhere"):
        Tracker("nosuch://nowhere", None)
