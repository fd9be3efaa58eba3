"""The `retrain` and `retrain_trigger` flows under a real (temporary) Prefect server."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from ragtune.config import load_params
from ragtune.stages import open_tracker
from ragtune.training import DELETED_TAG
from tests.training_support import insert_rows, make_project, qa_rows


def test_deployments_carry_the_schedule_and_ui_parameters(tiny_base: Path, tmp_path: Path) -> None:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.utilities.callables import parameter_schema

    from flows.retrain import build_deployments
    from flows.retrain import retrain as retrain_flow

    path = make_project(
        tmp_path / "p", tiny_base, extra="retrain:\n  cron: '15 2 * * 1'\n  check_interval_s: 120\n"
    )
    retrain, trigger = build_deployments(path)
    assert isinstance(retrain.schedules[0].schedule, CronSchedule)
    assert retrain.schedules[0].schedule.cron == "15 2 * * 1"
    assert retrain.concurrency_limit == 1
    editable = set(parameter_schema(retrain_flow).properties)
    assert {
        "max_steps",
        "epochs",
        "learning_rate",
        "lora_rank",
        "rag_context",
        "force_promote",
    } <= editable
    assert isinstance(trigger.schedules[0].schedule, IntervalSchedule)
    assert trigger.schedules[0].schedule.interval == dt.timedelta(seconds=120)


def test_retrain_then_volume_and_delete_triggers(
    prefect_server: None, tiny_base: Path, tmp_path: Path
) -> None:
    from flows.retrain import retrain, retrain_trigger

    path = make_project(tmp_path / "p", tiny_base, extra="retrain:\n  min_new_rows: 5\n")
    state = retrain(str(path), max_steps=1, learning_rate=0.01, return_state=True)
    assert state.is_completed(), state.message
    first = state.result()
    assert first["promotion"]["version"] == "1"
    tracker = open_tracker(load_params(path))
    params = tracker.run_info(first["mlflow_run_id"])["params"]
    assert params["override.train.max_steps"] == "1"
    assert params["override.train.learning_rate"] == "0.01"

    quiet = retrain_trigger(str(path))
    assert quiet["retrain"] is None and quiet["check"]["new_rows"] == 0

    insert_rows(path.parent / "labels.db", qa_rows(500, 3))
    assert retrain_trigger(str(path))["retrain"] is None  # 3 < min_new_rows

    trained = sorted(
        __import__("json").loads((path.parent / "models/candidate/trained_keys.json").read_text())
    )
    with sqlite3.connect(path.parent / "labels.db") as db:
        db.execute("DELETE FROM qa_pairs WHERE id = ?", (trained[0],))
    insert_rows(path.parent / "labels.db", qa_rows(600, 2))
    fired = retrain_trigger(str(path))
    assert fired["check"]["new_rows"] == 5 and fired["check"]["flagged"] == ["1"]
    assert fired["retrain"]["stages_run"][0] == "snapshot"
    assert tracker.version_info("1")["tags"][DELETED_TAG] == "true"
    assert fired["retrain"]["promotion"]["version"] == "2"

    # the `evaluate` flow on the versions just trained, with its results in the Prefect UI
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.evaluate import evaluate

    state = evaluate(str(path), max_questions=1, return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert {"base", "rag", "finetuned", "finetuned_rag"} <= set(report["configurations"])
    assert report["configurations"]["base"]["questions"] == 1
    with get_client(sync_client=True) as client:
        made = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_type = {a.type: a for a in made}
    assert {"table", "markdown", "progress"} <= set(by_type)
    assert [a.data for a in made if a.type == "progress"] == [100.0]
    assert any(report["mlflow_run_id"] in str(a.data) for a in made if a.type == "markdown")


def test_a_snapshot_failing_its_suite_fails_the_flow_run(
    prefect_server: None, tiny_base: Path, tmp_path: Path
) -> None:
    from flows.retrain import retrain

    path = make_project(tmp_path / "p", tiny_base)
    insert_rows(
        path.parent / "labels.db", [("q7000", "Which colour is the badge of team 1?", "Dup.", "t")]
    )
    state = retrain(str(path), return_state=True)
    assert state.is_failed()
    message = str(state.message) + str(state.result(raise_on_failure=False))
    assert "training snapshot failed its suite" in message
    assert not (path.parent / "models/candidate/adapter").exists()
