"""Prefect flows `retrain` and `retrain_trigger`: the fine-tuning loop on a schedule.

    python flows/retrain.py run     [--params params.yaml] [--max-steps 20]
    python flows/retrain.py serve   [--params params.yaml]   # both deployments

Wiring only. `retrain` runs the DVC pipeline (`ragtune train`) with the parameters a user
gives a custom run in the Prefect UI; one retrain at a time (deployment concurrency limit
and a global concurrency slot). `retrain_trigger` looks every `retrain.check_interval_s`
seconds: when at least `retrain.min_new_rows` labelled rows arrived since the last
snapshot, or a model version was trained on rows since deleted at the source (it tags
that version), it starts a retrain. The `retrain` deployment also runs on
`retrain.cron`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, serve, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment

from flows.progress import Progress, mlflow_run_link
from ragtune.config import load_params
from ragtune.errors import BusyError
from ragtune.stages import STAGES
from ragtune.training import STAGE_LINE, check_labelled_rows, run_training

RETRAIN = "retrain"
TRIGGER = "retrain-trigger"
SLOT = "ragtune-retrain"


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    params_path: str, overrides: dict[str, dict[str, Any]], trigger: str
) -> dict[str, Any]:
    logger = get_run_logger()
    progress = Progress("training pipeline")

    def echo(line: str) -> None:
        logger.info(line)
        for stage in STAGE_LINE.findall(line):
            progress.update(STAGES.index(stage), len(STAGES), f"stage {stage}")

    result = run_training(Path(params_path), overrides, echo=echo, trigger=trigger)
    progress.update(1, 1, "done" if result.stages_run else "nothing changed; no stage ran")
    params = load_params(params_path)
    promotion = result.promotion
    text = "retrain run in MLflow"
    if promotion:
        outcome = "champion" if promotion["promoted"] else "challenger"
        text += f": version {promotion['version']} is {outcome}"
    mlflow_run_link(params, result.run_id, text)
    return {
        "mlflow_run_id": result.run_id,
        "stages_run": result.stages_run,
        "promotion": result.promotion,
    }


@task(name="check_labelled_rows", cache_policy=NO_CACHE)
def check_task(params_path: str) -> dict[str, Any]:
    path = Path(params_path)
    check = check_labelled_rows(load_params(path), path.resolve().parent)
    return {"rows": check.rows, "new_rows": check.new_rows, "flagged": check.flagged_versions}


@flow(name="retrain")
def retrain(
    params_path: str = "params.yaml",
    max_steps: int | None = None,
    epochs: float | None = None,
    learning_rate: float | None = None,
    lora_rank: int | None = None,
    rag_context: Literal["none", "raft"] | None = None,
    force_promote: bool = False,
    trigger: str = "manual",
) -> dict[str, Any]:
    """Snapshot the labelled data, gate it, fine-tune, evaluate and promote (if it wins).

    Leave a parameter empty to use params.yaml's value. A snapshot that fails its quality
    suite, or any failed stage, ends the run Failed with the stage's message."""
    overrides: dict[str, dict[str, Any]] = {"train": {}, "build_dataset": {}, "promote": {}}
    for key, value in (
        ("max_steps", max_steps),
        ("epochs", epochs),
        ("learning_rate", learning_rate),
        ("lora_rank", lora_rank),
    ):
        if value is not None:
            overrides["train"][key] = value
    if rag_context is not None:
        overrides["build_dataset"]["rag_context"] = rag_context
    if force_promote:
        overrides["promote"]["force"] = True
    params = load_params(params_path)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(SLOT, limit=1)
    with retrain_slot(params.retrain.timeout_s):
        return train_task(params_path, {k: v for k, v in overrides.items() if v}, trigger)


@flow(name="retrain_trigger")
def retrain_trigger(params_path: str = "params.yaml") -> dict[str, Any]:
    """Start a retrain when enough labelled rows arrived, or when a model version was
    trained on rows that have since been deleted at the source."""
    logger = get_run_logger()
    params = load_params(params_path)
    check = check_task(params_path)
    reasons = []
    if check["new_rows"] >= params.retrain.min_new_rows:
        reasons.append(f"{check['new_rows']} new labelled rows")
    if check["flagged"]:
        reasons.append(f"versions {', '.join(check['flagged'])} trained on deleted rows")
    if not reasons:
        logger.info(
            "%s new labelled rows (a retrain needs %s): nothing to do",
            check["new_rows"],
            params.retrain.min_new_rows,
        )
        return {"check": check, "retrain": None}
    trigger = "; ".join(reasons)
    logger.info("starting a retrain: %s", trigger)
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.deployment_id:
        # served: a run of the `retrain` deployment, so it lands on that deployment's work
        # pool (a GPU pool on a cluster) and keeps its concurrency limit
        started: Any = run_deployment(
            f"retrain/{RETRAIN}",
            parameters={"params_path": params_path, "trigger": trigger},
            timeout=0,
        )
        return {"check": check, "retrain": {"flow_run_id": str(started.id)}}
    return {"check": check, "retrain": retrain(params_path, trigger=trigger)}


@contextlib.contextmanager
def retrain_slot(timeout_s: float) -> Iterator[None]:
    try:
        with concurrency(SLOT, occupy=1, strict=True, timeout_seconds=timeout_s):
            yield
    except TimeoutError:
        raise BusyError(
            f"another retrain is still running after {timeout_s:.0f} s; if none is, a "
            f"crashed run left its slot taken: `prefect gcl update {SLOT} --active-slots 0`"
        ) from None


def build_deployments(params_path: str | Path) -> list[Any]:
    """`retrain` on `retrain.cron`, and `retrain-trigger` every `check_interval_s`."""
    path = Path(params_path).resolve()
    params = load_params(path)
    return [
        retrain.to_deployment(
            name=RETRAIN,
            cron=params.retrain.cron,
            parameters={"params_path": str(path)},
            concurrency_limit=1,
            tags=["ragtune", "training"],
            description="Fine-tune the model on the labelled data and promote it if it wins.",
        ),
        retrain_trigger.to_deployment(
            name=TRIGGER,
            interval=dt.timedelta(seconds=params.retrain.check_interval_s),
            parameters={"params_path": str(path)},
            concurrency_limit=1,
            tags=["ragtune", "training"],
            description="Start a retrain when enough labelled rows arrived or rows were deleted.",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "serve"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()
    if args.command == "run":
        print(retrain(str(Path(args.params).resolve()), max_steps=args.max_steps))
    else:
        serve(*build_deployments(args.params))


if __name__ == "__main__":
    main()
