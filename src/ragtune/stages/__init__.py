"""The fine-tuning pipeline's stages, one module each, run by `pipelines/<stage>.py`.

`snapshot -> validate -> build_dataset -> train -> evaluate -> promote`, as declared in
dvc.yaml. Paths are relative to the project folder (where dvc.yaml and params.yaml are);
dvc.yaml names the same ones. Each stage reads params.run.yaml (params.yaml with defaults
filled in and one retrain run's overrides) and is tracked as an MLflow run, nested under
the retrain run when `ragtune train` started one.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ragtune.config import Params, load_params
from ragtune.errors import RagtuneError

DATA = Path("data/training")
PROBE = DATA / "source.json"
SNAPSHOT = DATA / "snapshot.parquet"
POSITION = DATA / "snapshot.json"
VALIDATION = DATA / "validation.json"
DATASET = DATA / "dataset"
CANDIDATE = Path("models/candidate")
ADAPTER = CANDIDATE / "adapter"
REPORTS = Path("reports")
EVALUATION = REPORTS / "evaluate.json"
PROMOTION = REPORTS / "promote.json"
RUN_PARAMS = Path("params.run.yaml")
STAGES = ("snapshot", "validate", "build_dataset", "train", "evaluate", "promote")  # dvc.yaml
RUN_SECTIONS = (
    "workspace",
    "training",
    "snapshot",
    "quality",
    "build_dataset",
    "train",
    "evaluate",
    "promote",
    "tracking",
    "index",
    "embeddings",
    "search",
)
SECRET_KEYS = (("training", "url"), ("index", "url"), ("index", "api_key"))
PARENT_RUN_ENV = "RAGTUNE_PARENT_RUN_ID"


@dataclass
class StageContext:
    """What a stage gets: validated params, the MLflow tracker and its run (or None)."""

    params: Params
    tracker: Any
    run_id: str | None

    def log_params(self, values: dict[str, Any]) -> None:
        if self.tracker and self.run_id:
            self.tracker.log_params(self.run_id, values)

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        if self.tracker and self.run_id:
            self.tracker.log_metrics(self.run_id, values, step=step)


def read_run_params(root: Path = Path(".")) -> dict[str, Any]:
    path = root / RUN_PARAMS
    if not path.is_file():
        raise RagtuneError(
            f"{RUN_PARAMS} not found: run the pipeline with `ragtune train`, which writes it"
        )
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    sections = {k: dict(v) for k, v in loaded.items() if k in RUN_SECTIONS and v}
    for section, key in SECRET_KEYS:  # masked in the file: params.yaml's own values stand
        sections.get(section, {}).pop(key, None)
    return sections


def write_run_params(root: Path, params: Params) -> None:
    """The pipeline's effective params (file, defaults and this run's overrides): what
    DVC compares to decide which stages rerun, and what the stages read."""
    from ragtune.adapters.sources import safe_url

    body = params.model_dump(mode="json", by_alias=True, include=set(RUN_SECTIONS))
    for section, key in SECRET_KEYS:
        value = (body.get(section) or {}).get(key)
        if value:
            body[section][key] = safe_url(value) if key == "url" else "***"
    text = (
        "# written by `ragtune train` before each run: params.yaml with defaults filled in\n"
        "# and this run's overrides; dvc.yaml's stages depend on these values\n"
    )
    path = root / RUN_PARAMS
    new = text + yaml.safe_dump(body, sort_keys=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != new:
        path.write_text(new, encoding="utf-8")


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", "utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def open_tracker(params: Params) -> Any:
    from ragtune.adapters.tracking import Tracker

    return Tracker(params.tracking_uri(), params.artifact_location(), params.tracking.experiment)


def open_registry(params: Params) -> Any:
    """The tracker, or None while a local sqlite store does not exist yet (nothing was ever
    registered, and opening it would create the file)."""
    store = params.tracking_uri()
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        return None
    return open_tracker(params)


def stage_main(name: str, body: Callable[[StageContext], None]) -> None:
    """Run one stage as a program: errors become one `ragtune:` line and exit code 1."""
    try:
        params = load_params("params.yaml", overrides=read_run_params())
        tracker = open_tracker(params)
        parent = os.environ.get(PARENT_RUN_ENV) or None
        with tracker.run(name, parent_run_id=parent) as run_id:
            body(StageContext(params, tracker, run_id))
    except RagtuneError as exc:
        print(f"ragtune: {name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # an unexpected failure: keep the trace, end with one line
        traceback.print_exc()
        print(f"ragtune: {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
