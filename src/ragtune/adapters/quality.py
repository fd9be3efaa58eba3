"""Great Expectations (GX Core 1.x) suites in code, run on every change batch and snapshot.

The chain is GX's: a pandas data source -> one dataframe asset per suite -> a whole-frame
batch definition -> the expectation suite -> a validation definition -> a checkpoint. It
is built once per process in a file context under `<workspace>/quality` and reused for
every batch. Results are stored, and Data Docs are rebuilt incrementally for the results
of each pass, then made to work offline (see `docs_assets`). Thresholds come from the
`quality:` section of params.yaml.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from ragtune.config import QualityConfig
from ragtune.core.quality import (
    ALLOWED_TYPES,
    CONTROL_CHARS,
    REPLACEMENT_CHAR,
    TYPE_PREFIX,
    Finding,
    GateReport,
    row_reason,
)

SOURCE = "ragtune"
ROW_FORMAT = {"result_format": "COMPLETE", "unexpected_index_column_names": ["key"]}
SUMMARY_FORMAT = {"result_format": "SUMMARY"}


class QualityGate:
    """The GX suites of one workspace; cheap to call once built."""

    def __init__(self, workspace: Path, config: QualityConfig):
        self.root = Path(workspace) / "quality"
        self.config = config
        self._context: Any = None
        self._checkpoints: dict[str, Any] = {}
        self._pending: list[Any] = []  # result identifiers whose pages are not built yet
        self.docs_interval_s = 0.0  # sync --follow renders at most this often
        self._built_at = 0.0

    # -- GX objects -----------------------------------------------------------------------

    @property
    def context(self) -> Any:
        if self._context is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            self.root.mkdir(parents=True, exist_ok=True)
            context = gx.get_context(mode="file", project_root_dir=str(self.root))
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            context.update_data_docs_site(
                "local_site",
                {
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,  # type: ignore[typeddict-unknown-key]
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": "uncommitted/data_docs/local_site/",
                    },
                    "site_index_builder": {
                        "class_name": "DefaultSiteIndexBuilder",
                        "validation_results_limit": self.config.docs_index_limit,
                    },
                },
            )
            self._context = context
        return self._context

    def _checkpoint(self, suite_name: str, expectations: list[Any], result_format: dict) -> Any:
        """Get-or-build the data source -> asset -> batch definition -> suite -> checkpoint."""
        if suite_name in self._checkpoints:
            return self._checkpoints[suite_name]
        import great_expectations as gx

        context = self.context
        try:
            source = context.data_sources.get(SOURCE)
        except LookupError:
            source = context.data_sources.add_pandas(name=SOURCE)
        try:
            asset = source.get_asset(suite_name)
        except LookupError:
            asset = source.add_dataframe_asset(name=suite_name)
        try:
            batch = asset.get_batch_definition("whole")
        except LookupError:
            batch = asset.add_batch_definition_whole_dataframe("whole")
        suite = gx.ExpectationSuite(name=suite_name)
        for expectation in expectations:
            suite.add_expectation(expectation)
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[],
                result_format=result_format,
            )
        )
        self._checkpoints[suite_name] = checkpoint
        return checkpoint

    def _run(self, checkpoint: Any, rows: list[dict[str, Any]], columns: list[str]) -> Any:
        import pandas as pd

        frame = pd.DataFrame(rows, columns=columns)
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        (identifier, suite_result), *_ = result.run_results.items()
        self._pending.append(identifier)
        return suite_result

    # -- suites ---------------------------------------------------------------------------

    def _change_rows_suite(self, source: str, declared: Mapping[str, str | None]) -> Any:
        import great_expectations.expectations as gxe

        c = self.config
        too_long = c.max_text_chars if c.too_long == "quarantine" else None
        expectations = [
            gxe.ExpectColumnValuesToNotBeNull(column="key"),
            gxe.ExpectColumnValueLengthsToBeBetween(column="key", min_value=1),
            gxe.ExpectColumnValuesToBeUnique(column="key"),
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=c.min_text_chars, max_value=too_long
            ),
            gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=CONTROL_CHARS),
            gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=REPLACEMENT_CHAR),
        ]
        for column, kind in sorted(declared.items()):
            if kind is not None:
                expectations.append(
                    gxe.ExpectColumnValuesToBeInSet(
                        column=f"{TYPE_PREFIX}{column}",
                        value_set=sorted(ALLOWED_TYPES[kind]),
                        meta={"declared": kind},
                    )
                )
        return self._checkpoint(f"{source}_change_rows", expectations, ROW_FORMAT)

    def _change_batch_suite(self) -> Any:
        import great_expectations.expectations as gxe

        c = self.config
        return self._checkpoint(
            "change_batch",
            [
                gxe.ExpectColumnMaxToBeBetween(column="rows", max_value=c.batch_max_rows),
                gxe.ExpectColumnMaxToBeBetween(
                    column="guarded_delete_fraction",
                    max_value=c.max_delete_fraction,
                    meta={"reason": "mass-delete guard"},
                ),
            ],
            SUMMARY_FORMAT,
        )

    # -- validations ----------------------------------------------------------------------

    def validate_changes(
        self,
        source: str,
        rows: list[dict[str, Any]],
        summary: dict[str, Any],
        declared: Mapping[str, str | None],
    ) -> GateReport:
        """Row-level checks on the documents about to be written, batch-level on the batch."""
        report = GateReport(success=True)
        if rows:
            columns = ["key", "text"] + [
                f"{TYPE_PREFIX}{c}" for c, kind in sorted(declared.items()) if kind is not None
            ]
            result = self._run(self._change_rows_suite(source, declared), rows, columns)
            self._read_rows(result, report)
        guarded = dict(summary)
        if summary["indexed_documents"] < self.config.mass_delete_min_documents:
            guarded["guarded_delete_fraction"] = 0.0
        else:
            guarded["guarded_delete_fraction"] = summary["delete_fraction"]
        result = self._run(self._change_batch_suite(), [guarded], list(guarded))
        self._read_batch(result, report)
        report.success = not report.rows and not report.batch
        return report

    def validate_training(self, rows: list[dict[str, Any]]) -> GateReport:
        """The training-snapshot suite: present and bounded Q/A, unique questions, no
        evaluation question in the training split, enough rows."""
        import great_expectations.expectations as gxe

        t = self.config.training
        checkpoint = self._checkpoint(
            "training_snapshot",
            [
                gxe.ExpectColumnValuesToNotBeNull(column="question"),
                gxe.ExpectColumnValuesToNotBeNull(column="answer"),
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column="question",
                    min_value=t.min_question_chars,
                    max_value=t.max_question_chars,
                ),
                gxe.ExpectColumnValueLengthsToBeBetween(
                    column="answer", min_value=t.min_answer_chars, max_value=t.max_answer_chars
                ),
                gxe.ExpectColumnValuesToBeUnique(column="question_norm"),
                gxe.ExpectColumnValuesToBeInSet(column="leaks_evaluation", value_set=[False]),
                gxe.ExpectTableRowCountToBeBetween(min_value=t.min_rows),
            ],
            {"result_format": "COMPLETE", "unexpected_index_column_names": ["key"]},
        )
        columns = ["key", "question", "answer", "split", "question_norm", "leaks_evaluation"]
        result = self._run(checkpoint, rows, columns)
        report = GateReport(success=bool(result.success))
        self._read_rows(result, report)
        return report

    # -- results --------------------------------------------------------------------------

    def _read_rows(self, result: Any, report: GateReport) -> None:
        """Row failures by key; aggregate or erroring expectations as batch findings."""
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column")
            error = _exception(item)
            detail = item.result or {}
            if error or "unexpected_index_list" not in detail:
                report.batch.append(_finding(config, detail, error))
                continue
            limits = {
                "max_text_chars": config.kwargs.get("max_value"),
                "regex": config.kwargs.get("regex"),
                "declared": (config.meta or {}).get("declared"),
            }
            reason = row_reason(config.type, column, limits)
            for entry in detail["unexpected_index_list"]:
                key = str(entry.get("key"))
                reasons = report.rows.setdefault(key, [])
                if reason not in reasons:
                    reasons.append(reason)

    def _read_batch(self, result: Any, report: GateReport) -> None:
        for item in result.results:
            if not item.success:
                report.batch.append(
                    _finding(item.expectation_config, item.result or {}, _exception(item))
                )

    # -- Data Docs ------------------------------------------------------------------------

    @property
    def site(self) -> Path:
        return self.root / "gx" / "uncommitted" / "data_docs" / "local_site"

    def build_docs(self, force: bool = False) -> Path | None:
        """Render the pages of the validations not rendered yet (and the index),
        offline-ready; unless forced, at most once per `docs_interval_s`."""
        if not self._pending:
            return None
        if not force and time.monotonic() - self._built_at < self.docs_interval_s:
            return None
        self._built_at = time.monotonic()
        from ragtune.adapters.docs_assets import localize

        with FileLock(str(self.root / ".docs.lock")):
            self.context.build_data_docs(
                site_names=["local_site"], resource_identifiers=self._pending
            )
            self._pending = []
            self._prune()
            localize(self.site)
        return self.site / "index.html"

    def _prune(self) -> None:
        """Keep the newest `keep_validations` results (and their pages) per suite."""
        for base in (self.root / "gx" / "uncommitted" / "validations", self.site / "validations"):
            if not base.is_dir():
                continue
            for suite in base.iterdir():
                runs = sorted((p for p in suite.glob("*/*") if p.is_dir()), key=lambda p: p.name)
                for stale in runs[: -self.config.keep_validations or None]:
                    shutil.rmtree(stale, ignore_errors=True)


def latest_page(workspace: Path) -> Path | None:
    """The newest validation page of a workspace's Data Docs, if any."""
    site = Path(workspace) / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    pages = sorted(site.glob("validations/*/*/*/*.html"), key=lambda p: p.parent.name)
    return pages[-1] if pages else None


def _exception(item: Any) -> str | None:
    info = item.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "expectation raised")
    return None


def _finding(config: Any, detail: Mapping[str, Any], error: str | None) -> Finding:
    column = config.kwargs.get("column")
    reason = (config.meta or {}).get("reason") or config.type
    if error:
        return Finding(config.type, column, f"errored: {error}")
    observed = detail.get("observed_value", detail.get("unexpected_count"))
    low, high = config.kwargs.get("min_value"), config.kwargs.get("max_value")
    if high is not None and isinstance(observed, int | float) and observed > high:
        bound = f"> max {high}"
    elif low is not None and isinstance(observed, int | float) and observed < low:
        bound = f"< min {low}"
    else:
        bound = f"outside {low}..{high}"
    return Finding(config.type, column, reason, observed=observed, bound=bound)
