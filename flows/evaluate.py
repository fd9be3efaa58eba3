"""Prefect flow `evaluate`: base / rag / finetuned / finetuned_rag (and raft) measured.

    python flows/evaluate.py run   [--params params.yaml]
    python flows/evaluate.py serve [--params params.yaml]   # the `evaluate` deployment

Wiring only: `ragtune evaluate` as a flow run. The run shows its progress (one step per
configuration), the evaluation table, the Markdown report and a link to the MLflow run in
the Prefect UI. The deployment has no schedule: start it from the UI or after a retrain.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, serve

from flows.progress import Progress, evaluation_table
from ragtune.config import load_params

DEPLOYMENT = "evaluate"


@flow(name="evaluate")
def evaluate(params_path: str = "params.yaml", max_questions: int | None = None) -> dict[str, Any]:
    """Answer the frozen test split and the freshness probes with every configuration;
    leave `max_questions` empty to use params.yaml's value."""
    from ragtune.evaluation import evaluate as run_evaluation
    from ragtune.evaluation import markdown, save

    logger = get_run_logger()
    path = Path(params_path).resolve()
    overrides = {"evaluate": {"max_questions": max_questions}} if max_questions else None
    params = load_params(path, overrides=overrides)
    progress = Progress("evaluation")
    report = run_evaluation(
        params,
        path.parent,
        on_configuration=lambda done, total, name: progress.update(done, total, name),
    )
    paths = save(params, report, path.parent)
    logger.info("evaluation report %s (MLflow run %s)", paths["markdown"], report["mlflow_run_id"])
    evaluation_table(params, report, markdown(report))
    return report


def build_deployment(params_path: str | Path) -> Any:
    path = Path(params_path).resolve()
    return evaluate.to_deployment(
        name=DEPLOYMENT,
        parameters={"params_path": str(path)},
        concurrency_limit=1,
        tags=["ragtune", "evaluation"],
        description="Base vs RAG vs fine-tuned vs both, with freshness probes.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "serve"])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    if args.command == "run":
        report = evaluate(str(Path(args.params).resolve()))
        print(report["configurations"])
    else:
        serve(build_deployment(args.params))


if __name__ == "__main__":
    main()
