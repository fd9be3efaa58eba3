"""What long flow runs show in the Prefect UI: progress, tables and links (artifacts).

Wiring only: each function turns a result ragtune already computed into a Prefect
artifact. Links to MLflow point at the `ragtune up` MLflow UI (`services.host` and
`services.mlflow_port`); Data Docs links are file:// pages on the machine that ran the flow.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from ragtune.config import Params


class Progress:
    """A progress artifact (0-100 %) of one flow run, moved forward as work completes."""

    def __init__(self, description: str):
        self.description = description
        self.artifact_id = cast(UUID, create_progress_artifact(0.0, description=description))

    def update(self, done: float, total: float, note: str | None = None) -> None:
        share = 100.0 * min(done, total) / total if total else 100.0
        update_progress_artifact(
            self.artifact_id, share, description=f"{self.description}: {note}" if note else None
        )


def mlflow_ui(params: Params) -> str:
    return f"http://{params.services.host}:{params.services.mlflow_port}"


def mlflow_run_link(params: Params, run_id: str, text: str) -> None:
    """A link to an MLflow run in the MLflow UI."""
    from mlflow import MlflowClient

    run = MlflowClient(params.tracking_uri()).get_run(run_id)
    url = f"{mlflow_ui(params)}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    create_link_artifact(url, link_text=text, description=f"MLflow run {run_id}")


def freshness_table(params: Params) -> None:
    """Per source: documents, chunks, pending changes, lag p50/p95, as of."""
    from ragtune.status import collect_status

    report = collect_status(params)
    rows = [
        {
            "source": name,
            "documents": s["documents"],
            "chunks": s["chunks"],
            "pending": s.get("pending"),
            "quarantined": s["quarantined"],
            "lag_p50_s": s["lag_p50_s"],
            "lag_p95_s": s["lag_p95_s"],
            "as_of": s["as_of"],
        }
        for name, s in report["sources"].items()
    ]
    create_table_artifact(
        rows,
        key="ragtune-freshness",
        description=f"Index freshness (index version {report['index']['version']})",
    )
    page = report["quality"].get("data_docs")
    if report["quality"].get("latest_validation") and page:
        create_link_artifact(f"file://{page}", link_text="Data Docs (quality gate results)")


def evaluation_table(params: Params, report: dict[str, Any], markdown: str) -> None:
    """The evaluation table (one row per configuration) and the Markdown report."""
    from ragtune.evaluation import columns

    create_table_artifact(
        columns(report),
        key="ragtune-evaluation",
        description=f"{' / '.join(report['configurations'])} on index version "
        f"{report['index_version']}",
    )
    create_markdown_artifact(markdown, key="ragtune-evaluation-report")
    if report.get("mlflow_run_id"):
        mlflow_run_link(params, report["mlflow_run_id"], "evaluation in MLflow")
