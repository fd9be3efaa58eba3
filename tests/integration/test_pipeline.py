"""The whole DVC pipeline on tiny data in a temporary git repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.adapters.versioning import PipelineError
from ragtune.config import load_params
from ragtune.stages import open_tracker
from ragtune.training import run_training
from tests.training_support import insert_rows, make_project

ALL = ["snapshot", "validate", "build_dataset", "train", "evaluate", "promote"]


def quiet(_line: str) -> None:
    pass


def test_pipeline_runs_skips_and_reruns_only_what_changed(tiny_base: Path, tmp_path: Path) -> None:
    params_path = make_project(tmp_path / "project", tiny_base)
    root = params_path.parent

    first = run_training(params_path, echo=quiet)
    assert first.stages_run == ALL
    assert first.promotion is not None and first.promotion["version"] == "1"
    for name in ("snapshot.parquet", "dataset/train.jsonl"):
        assert (root / "data/training" / name).exists()
    assert (root / "models/candidate/adapter/adapter_config.json").is_file()
    assert any((root / "remote").rglob("*")), "dvc push filled the local remote"

    params = load_params(params_path)
    tracker = open_tracker(params)
    retrain = tracker.run_info(first.run_id)
    assert retrain["status"] == "FINISHED"
    for tag in (
        "ragtune.data_version",
        "ragtune.source_position",
        "ragtune.index_version",
        "ragtune.base_model",
        "ragtune.git_commit",
    ):
        assert retrain["tags"][tag], tag
    version = tracker.version_info("1")
    assert version["tags"]["ragtune.base_model"] == str(tiny_base)
    assert version["run_id"] != first.run_id  # the train stage's nested run holds the adapter

    assert run_training(params_path, echo=quiet).stages_run == []  # nothing changed

    changed = run_training(params_path, {"promote": {"force": True}}, echo=quiet)
    assert changed.stages_run == ["promote"]

    changed = run_training(params_path, {"train": {"init_from": "champion"}}, echo=quiet)
    assert changed.stages_run == ["train", "evaluate", "promote"]
    train_run = tracker.version_info(changed.promotion["version"])["run_id"]
    assert tracker.run_info(train_run)["params"]["init_adapter"].endswith("adapter")

    insert_rows(
        root / "labels.db",
        [("q9999", "Which colour is the badge of team 9999?", "Gold.", "teams/0")],
    )
    changed = run_training(params_path, echo=quiet)
    assert changed.stages_run[:2] == ["snapshot", "validate"]


def test_a_failing_snapshot_stops_before_training(tiny_base: Path, tmp_path: Path) -> None:
    params_path = make_project(tmp_path / "project", tiny_base, rows=40)
    root = params_path.parent
    insert_rows(
        root / "labels.db", [("q5000", "Which colour is the badge of team 5000?", None, "teams/0")]
    )
    with pytest.raises(PipelineError) as failure:
        run_training(params_path, echo=quiet)
    message = str(failure.value)
    assert "validate" in message and "training snapshot failed its suite" in message
    assert "q5000" in message
    assert not (root / "models/candidate/adapter").exists()  # training never started
    tracker = open_tracker(load_params(params_path))
    assert tracker.champion() is None
