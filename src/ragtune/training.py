"""`ragtune train`: one retrain = probe the labelled table, `dvc repro`, push, record.

The run is one MLflow run (`retrain`) whose stages are nested runs; it carries the
lineage tags once the pipeline has finished. `check_labelled_rows` is the data-volume
trigger and the delete check: how many labelled rows arrived since the last snapshot, and
which registered versions were trained on rows since deleted at the source.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragtune.adapters.state import StateStore
from ragtune.adapters.versioning import (
    PipelineError,
    _dvc,
    ensure_project,
    environment,
    last_error,
    run_dvc,
)
from ragtune.config import Params, load_params
from ragtune.errors import ConfigError
from ragtune.stages import (
    PARENT_RUN_ENV,
    POSITION,
    PROMOTION,
    open_registry,
    open_tracker,
    read_json,
    write_run_params,
)
from ragtune.stages.snapshot import probe, read_labelled

STAGE_LINE = re.compile(r"Running stage '([a-z_]+)'")
DVC_HINTS = (
    "To track the changes",
    "git add ",
    "To enable auto staging",
    "dvc config core",
    "Use `dvc push`",
)
DELETED_TAG = "ragtune.trained_on_deleted_rows"
OVERRIDABLE = {
    "train": {"max_steps", "epochs", "learning_rate", "lora_rank", "lora_alpha", "init_from"},
    "build_dataset": {"rag_context"},
    "promote": {"force"},
}


@dataclass
class RetrainResult:
    run_id: str
    stages_run: list[str] = field(default_factory=list)
    promotion: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.stages_run)


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """`train.max_steps=20` pairs -> {"train": {"max_steps": 20}}; values parsed as YAML."""
    overrides: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or key not in OVERRIDABLE.get(section, set()):
            allowed = ", ".join(f"{s}.{k}" for s, keys in OVERRIDABLE.items() for k in sorted(keys))
            raise ConfigError(f"--set {pair!r}: expected NAME=VALUE with NAME one of: {allowed}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML reads 1e-4 as text
            with contextlib.suppress(ValueError):
                parsed = float(parsed)
        overrides.setdefault(section, {})[key] = parsed
    return overrides


def run_training(
    params_path: Path,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    echo: Callable[[str], None] = print,
    push: bool | None = None,
    trigger: str = "manual",
    force: bool = False,
) -> RetrainResult:
    """Run the pipeline for the params file's folder; PipelineError names a failed stage."""
    params = load_params(params_path, overrides={k: dict(v) for k, v in (overrides or {}).items()})
    params.training_source()
    root = params_path.resolve().parent
    ensure_project(root, params.dvc_remote())
    write_run_params(root, params)
    found = probe(params, root)
    tracker = open_tracker(params)
    run_id = tracker.start_run(
        "retrain", tags={"ragtune.trigger": trigger, "ragtune.labelled_rows": str(found["rows"])}
    )
    tracker.log_params(run_id, {f"override.{s}": dict(v) for s, v in (overrides or {}).items()})
    result = RetrainResult(run_id)
    try:
        output = _repro(root, {PARENT_RUN_ENV: run_id}, echo, force)
        result.stages_run = STAGE_LINE.findall(output)
        if "promote" in result.stages_run:
            result.promotion = read_json(root / PROMOTION)
            tracker.set_tags(run_id, result.promotion["lineage"])
            tracker.set_tags(run_id, {"ragtune.model_version": result.promotion["version"]})
        tracker.set_tags(run_id, {"ragtune.stages_run": ",".join(result.stages_run) or "none"})
        if (params.versioning.push if push is None else push) and result.changed:
            run_dvc(root, ["push", "-q"])
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    return result


def _repro(
    root: Path, extra_env: dict[str, str], echo: Callable[[str], None], force: bool = False
) -> str:
    """`dvc repro`, its output passed on line by line; PipelineError with the stage's error."""
    process = subprocess.Popen(
        [_dvc(), "repro", *(["--force"] if force else [])],
        cwd=root,
        env=environment(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.strip() and not line.lstrip().startswith(DVC_HINTS):
            echo(line.rstrip("\n"))
    output = "".join(lines)
    if process.wait() != 0:
        raise PipelineError(f"training pipeline failed: {last_error(output)}")
    return output


@dataclass
class LabelledCheck:
    rows: int
    new_rows: int
    flagged_versions: list[str]

    def wants_retrain(self, min_new_rows: int) -> bool:
        return self.new_rows >= min_new_rows or bool(self.flagged_versions)


def check_labelled_rows(params: Params, root: Path) -> LabelledCheck:
    """Rows that arrived since the last snapshot; versions trained on since-deleted rows
    get tag `ragtune.trained_on_deleted_rows=true`."""
    rows = read_labelled(params.training_source())
    present = {r["key"] for r in rows}
    snapshot_keys: set[str] = set()
    snapshot_file = root / POSITION.with_name("snapshot.parquet")
    if snapshot_file.is_file():
        import pandas as pd

        snapshot_keys = set(pd.read_parquet(snapshot_file, columns=["key"])["key"].astype(str))
    new_rows = len(present - snapshot_keys)
    flagged = []
    trained = StateStore(params.workspace.path).trained_keys()
    if trained:
        tracker = open_tracker(params)
        for version, keys in sorted(trained.items()):
            gone = keys - present
            if not gone:
                continue
            tags = tracker.version_info(version)["tags"]
            if tags.get(DELETED_TAG) != "true":
                tracker.tag_version(version, DELETED_TAG, "true")
                flagged.append(version)
            if tags.get("ragtune.deleted_rows") != str(len(gone)):  # more rows may go later
                tracker.tag_version(version, "ragtune.deleted_rows", str(len(gone)))
    return LabelledCheck(len(rows), new_rows, flagged)


def model_status(params: Params) -> dict[str, Any]:
    """For `ragtune status`: the tracking URI, the champion, versions trained on deleted rows."""
    status: dict[str, Any] = {"tracking_uri": params.tracking_uri(), "champion": None}
    tracker = open_registry(params)
    if tracker is None:
        status["trained_on_deleted_rows"] = []
        return status
    champion = tracker.champion()
    if champion:
        status["champion"] = {
            "name": champion["name"],
            "version": champion["version"],
            "run_id": champion["run_id"],
        }
    status["trained_on_deleted_rows"] = [
        v["version"] for v in tracker.versions() if v["tags"].get(DELETED_TAG) == "true"
    ]
    return status


__all__ = ["PipelineError", "RetrainResult", "check_labelled_rows", "run_training"]
