"""MLflow adapter: runs, params, metrics, artifacts, and the adapter model registry.

Nothing is configured at import time: each `Tracker` holds its own `MlflowClient` bound to
its tracking and registry URI, so two trackers (or a test and the CLI) never fight over
MLflow's global state. Nested runs carry the `mlflow.parentRunId` tag, exactly as
`mlflow.start_run(nested=True)` would set it.

Every trained LoRA adapter folder is logged as plain run artifacts and registered as a
version of `MODEL_NAME` (it is not an MLflow-flavoured model: no MLmodel file), with the
lineage tags on the version. Promotion is by alias only (`champion`, `challenger`); MLflow
stages are deprecated and never used.
"""

from __future__ import annotations

import contextlib
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from mlflow.utils.time import get_current_time_millis
from sqlalchemy.exc import SQLAlchemyError

from ragtune.errors import TrackingError

MODEL_NAME = "ragtune-generator"
LINEAGE_TAGS = (
    "ragtune.data_version",
    "ragtune.source_position",
    "ragtune.index_version",
    "ragtune.base_model",
    "ragtune.git_commit",
)
PARENT_RUN_TAG = "mlflow.parentRunId"
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
MAX_KEY = 250  # MLflow's limit on a param key
PROBE_TIMEOUT_S = 5.0

RunEnd = Literal["FINISHED", "FAILED"]


class Tracker:
    """One MLflow experiment plus the `MODEL_NAME` registered model."""

    def __init__(
        self, tracking_uri: str, artifact_location: str | None, experiment: str = "ragtune"
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        logging.getLogger("mlflow.store.db.utils").setLevel(
            logging.WARNING
        )  # schema set-up chatter
        _check_reachable(tracking_uri)
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            self.experiment_id = self._ensure_experiment(experiment, artifact_location)
        except (MlflowException, SQLAlchemyError, OSError) as exc:
            raise TrackingError(
                f"MLflow tracking URI {_redact(tracking_uri)} cannot be used ({_first_line(exc)}); "
                "set it to sqlite:///<path>/mlflow.db or http://<host>:<port>"
            ) from exc

    def _ensure_experiment(self, name: str, artifact_location: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = _as_artifact_uri(artifact_location)
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException as exc:  # created meanwhile by another process
                if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                    raise
                found = self.client.get_experiment_by_name(name)
                assert found is not None
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    # -- runs ---------------------------------------------------------------------------

    def start_run(
        self,
        name: str,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        all_tags = dict(tags or {})
        if parent_run_id is not None:
            all_tags[PARENT_RUN_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return str(run.info.run_id)

    def end_run(self, run_id: str, status: RunEnd = "FINISHED") -> None:
        if status not in ("FINISHED", "FAILED"):
            raise ValueError(f"run status must be FINISHED or FAILED, got {status!r}")
        self.client.set_terminated(run_id, status=status)

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED when the block raises (the error propagates)."""
        run_id = self.start_run(name, parent_run_id=parent_run_id, tags=tags)
        try:
            yield run_id
        except BaseException:
            self.end_run(run_id, "FAILED")
            raise
        self.end_run(run_id, "FINISHED")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        flat = flatten_params(params)
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in flat.items()])

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        now = get_current_time_millis()
        batch = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        if not Path(folder).is_dir():
            raise ValueError(f"artifact folder {folder} does not exist or is not a folder")
        self.client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)

    def log_table(self, run_id: str, table: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A column -> values table, shown in the MLflow UI's artifact and evaluation views."""
        import pandas as pd

        self.client.log_table(run_id, data=pd.DataFrame(dict(table)), artifact_file=artifact_file)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        self.client.log_batch(run_id, tags=batch)

    def run_info(self, run_id: str) -> dict[str, Any]:
        run = self.client.get_run(run_id)
        return {
            "run_id": run.info.run_id,
            "status": run.info.status,
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "tags": dict(run.data.tags),
        }

    # -- registry -----------------------------------------------------------------------

    def register(self, run_id: str, artifact_path: str, tags: Mapping[str, str]) -> str:
        """Register the run's artifact folder as a new version of `MODEL_NAME`."""
        try:
            self.client.create_registered_model(MODEL_NAME)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        # A plain folder has no MLmodel file, so `mlflow.register_model("runs:/...")` would
        # look for a LoggedModel and fail; register the folder's concrete location instead.
        source = RunsArtifactRepository.get_underlying_uri(
            f"runs:/{run_id}/{artifact_path.strip('/')}", tracking_uri=self.tracking_uri
        )
        version = self.client.create_model_version(
            MODEL_NAME,
            source=source,
            run_id=run_id,
            tags={key: str(value) for key, value in tags.items()},
        )
        return str(version.version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(MODEL_NAME, alias, str(version))

    def champion(self) -> dict[str, Any] | None:
        """The version holding the `champion` alias, or None (no model or no alias yet)."""
        # Not get_model_version_by_alias: a missing alias is INVALID_PARAMETER_VALUE on the
        # sqlite store, so it cannot be told apart from a real error by its code.
        try:
            model = self.client.get_registered_model(MODEL_NAME)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None
            raise
        version = model.aliases.get("champion")
        return None if version is None else self.version_info(str(version))

    def version_info(self, version: str) -> dict[str, Any]:
        return _version_dict(self.client.get_model_version(MODEL_NAME, str(version)))

    def tag_version(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(MODEL_NAME, version=str(version), key=key, value=value)

    def versions(self) -> list[dict[str, Any]]:
        """Every version of `MODEL_NAME`, newest first ([] before the first registration)."""
        found: list[ModelVersion] = []
        token: str | None = None
        while True:
            page = self.client.search_model_versions(f"name = '{MODEL_NAME}'", page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        found.sort(key=lambda v: int(v.version), reverse=True)
        return [_version_dict(v) for v in found]

    def download(self, version: str, dest: Path) -> Path:
        """Download a version's adapter folder into `dest` (absent or empty, so no stale
        files mix in); returns the folder holding the files."""
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"download destination {dest} is not empty")
        source = self.client.get_model_version_download_uri(MODEL_NAME, str(version))
        dest.mkdir(parents=True, exist_ok=True)
        # Not `models:/name/version`: that resolves through MLflow's *global* registry URI.
        local = download_artifacts(
            artifact_uri=source, dst_path=str(dest), tracking_uri=self.tracking_uri
        )
        return Path(local)


def sqlite_uri(path: Path) -> str:
    return "sqlite:///" + str(Path(path).resolve())


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"lora": {"r": 8}}` -> `{"lora.r": "8"}`; long values are cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name[:MAX_KEY]] = _truncate(str(value), MAX_PARAM_VALUE)
    return flat


def _truncate(text: str, limit: int) -> str:
    marker = "...[truncated]"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


def _version_dict(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": str(version.version),
        "run_id": version.run_id,
        "source": version.source,
        "tags": dict(version.tags),
        "aliases": list(version.aliases),
    }


def _as_artifact_uri(location: str | None) -> str | None:
    """A plain local path becomes a file:// URI; URIs (s3://, file://...) pass through."""
    if location is None or "://" in location:
        return location
    return Path(location).resolve().as_uri()


def _check_reachable(uri: str) -> None:
    """Fail fast on a dead server or database: MLflow itself retries for minutes."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            return  # it answered; MLflow reports anything wrong with the answer itself
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {_redact(uri)} is unreachable ({reason}); start it "
                "(mlflow server --backend-store-uri sqlite:///mlflow.db) or fix the tracking URI"
            ) from exc
    elif uri.startswith(("postgresql", "mysql")):
        engine = sa.create_engine(uri, connect_args={"connect_timeout": int(PROBE_TIMEOUT_S)})
        try:
            with engine.connect():
                pass
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc  # the driver's own message
            raise TrackingError(
                f"MLflow tracking database {_redact(uri)} is unreachable "
                f"({_first_line(cause)}); start it or fix the tracking URI"
            ) from exc
        finally:
            engine.dispose()


def _redact(uri: str) -> str:
    """Hide the password in `scheme://user:password@host`."""
    return re.sub(r"(://[^/:@]+:)[^/@]+@", r"\1***@", uri)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AnswerTracer:
    """MLflow traces of answers: an `ask` span with `retrieve` and `generate` children.

    Tracing goes through MLflow's fluent API, so it points MLflow's process-wide tracking
    URI and experiment at this store when constructed (inside the service, never at
    import)."""

    def __init__(self, tracker: Tracker):
        import mlflow

        mlflow.set_tracking_uri(tracker.tracking_uri)
        mlflow.set_experiment(experiment_id=tracker.experiment_id)
        self.mlflow = mlflow

    @contextlib.contextmanager
    def span(self, name: str, kind: str, inputs: Mapping[str, Any]) -> Iterator[Any]:
        with self.mlflow.start_span(name=name, span_type=kind) as span:
            span.set_inputs(dict(inputs))
            yield span

    def last_trace_id(self) -> str | None:
        return self.mlflow.get_last_active_trace_id()
