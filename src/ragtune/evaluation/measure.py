"""`ragtune evaluate`: base, RAG, fine-tuned and both, measured on the same questions.

Questions are the frozen test split of the last training snapshot, asked against the
index as it is now (its version is recorded). Configurations: `base` (base model, no
sources), `rag` (base model with retrieved sources), `finetuned` (champion, no sources),
`finetuned_rag` (champion with sources), and `raft` (the newest version trained on RAFT
examples, with sources) when one is registered. Metrics: answer token-F1, answer-contains,
citation accuracy (a cited chunk belongs to the gold document), p50 latency per
question, prompt tokens. **Freshness probes** are labelled rows that arrived after the
training snapshot: the fine-tuned model never saw them, the RAG configurations can find
them in the index. The report is printed, written as Markdown and JSON under `reports/`,
and logged to MLflow as a table and a PNG chart.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtune.adapters.models import token_ids
from ragtune.answer import Answerer, Generator, cite, load_generator, raft_version
from ragtune.config import Params
from ragtune.core.metrics import contains, mean, token_f1
from ragtune.core.prompts import chat
from ragtune.errors import RagtuneError

METRICS = ("token_f1", "contains", "citation_accuracy", "latency_p50_ms", "prompt_tokens")


def evaluation_rows(
    params: Params, root: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(test rows of the last snapshot, labelled rows that arrived after it)."""
    import pandas as pd

    from ragtune.stages import SNAPSHOT
    from ragtune.stages.snapshot import read_labelled

    snapshot = root / SNAPSHOT
    if not snapshot.is_file():
        raise RagtuneError("no training snapshot yet: run `ragtune train` first")
    frame = pd.read_parquet(snapshot)
    tests = frame[frame["split"] == "test"].to_dict(orient="records")
    known = set(frame["key"].astype(str))
    fresh = [r for r in read_labelled(params.training_source()) if r["key"] not in known]
    limit = params.evaluate.max_questions
    return tests[:limit], fresh[:limit]


def run_configuration(
    answerer: Answerer, generator: Generator, rows: list[dict[str, Any]], with_sources: bool
) -> dict[str, Any]:
    params = answerer.params
    f1, hit, cited_ok, latencies, prompt_tokens = [], [], [], [], []
    for row in rows:
        started = time.perf_counter()
        hits = answerer.retrieve(row["question"], None, None) if with_sources else []
        prompt = chat(row["question"], hits, params.build_dataset)
        raw = generator.generate([prompt], params.evaluate.max_new_tokens)[0]
        latencies.append((time.perf_counter() - started) * 1000)
        prompt_tokens.append(
            len(
                token_ids(
                    generator.tokenizer.apply_chat_template(prompt, add_generation_prompt=True)
                )
            )
        )
        text, cited, _ = cite(raw, [h.text for h in hits])
        f1.append(token_f1(text, row["answer"] or ""))
        hit.append(contains(text, row["answer"] or ""))
        if with_sources and row.get("document"):
            cited_ok.append(float(any(hits[n - 1].key == row["document"] for n in cited)))
    return {
        "token_f1": round(mean(f1), 4),
        "contains": round(mean(hit), 4),
        "citation_accuracy": round(mean(cited_ok), 4) if cited_ok else None,
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "prompt_tokens": round(mean(prompt_tokens), 1),
        "questions": len(rows),
    }


def evaluate(
    params: Params,
    root: Path,
    on_configuration: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Every configuration on the test split and the freshness probes;
    `on_configuration(done, total, name)` is called as each one finishes."""
    tests, fresh = evaluation_rows(params, root)
    if not tests:
        raise RagtuneError("the snapshot's test split is empty; add labelled rows")
    answerer = Answerer(params, "base")
    models = {"base": answerer.generator}
    champion = load_generator(params, "champion")
    if champion.version is not None:
        models["finetuned"] = champion
    report: dict[str, Any] = {
        "index_version": answerer.index.version(),
        "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "champion_version": champion.version,
        "raft_version": None,
        "configurations": {},
        "freshness": {},
    }
    plans: list[tuple[str, Generator, bool]] = []
    for name, generator in models.items():
        rag_name = "rag" if name == "base" else "finetuned_rag"
        plans += [(name, generator, False), (rag_name, generator, True)]
    raft = raft_version(params)
    if raft is not None:
        report["raft_version"] = raft
        model = champion if champion.version == raft else load_generator(params, version=raft)
        plans.append(("raft", model, True))
    for done, (label, generator, with_sources) in enumerate(plans, 1):
        report["configurations"][label] = run_configuration(
            answerer, generator, tests, with_sources
        )
        if fresh:
            report["freshness"][label] = run_configuration(answerer, generator, fresh, with_sources)
        if on_configuration is not None:
            on_configuration(done, len(plans), label)
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# ragtune evaluation",
        "",
        f"Index version {report['index_version']}, champion version "
        f"{report['champion_version'] or 'none'}, at {report['evaluated_at']}.",
        "",
        "| configuration | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for name, values in report["configurations"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(values.get(m)) for m in METRICS) + " |")
    if report["freshness"]:
        lines += ["", "Freshness probes (labelled rows newer than the training snapshot):", ""]
        lines += ["| configuration | token_f1 | contains |", "|---|---|---|"]
        for name, values in report["freshness"].items():
            lines.append(f"| {name} | {_cell(values['token_f1'])} | {_cell(values['contains'])} |")
    return "\n".join(lines) + "\n"


def tables(report: dict[str, Any]) -> list[Any]:
    """The report as rich tables for the terminal: configurations, then freshness probes."""
    from rich.table import Table

    table = Table(title=f"evaluation (index version {report['index_version']})")
    table.add_column("configuration")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for name, values in report["configurations"].items():
        table.add_row(name, *(_cell(values.get(m)) for m in METRICS))
    shown = [table]
    if report["freshness"]:
        fresh = Table(title="freshness probes (labelled rows newer than the training snapshot)")
        for column in ("configuration", "token_f1", "contains"):
            fresh.add_column(column)
        for name, values in report["freshness"].items():
            fresh.add_row(name, str(values["token_f1"]), str(values["contains"]))
        shown.append(fresh)
    return shown


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)


def chart(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["configurations"])
    figure, axis = plt.subplots(figsize=(7, 3.5))
    width = 0.38
    for offset, metric in ((-width / 2, "token_f1"), (width / 2, "contains")):
        values = [report["configurations"][n][metric] or 0 for n in names]
        axis.bar([i + offset for i in range(len(names))], values, width, label=metric)
    axis.set_xticks(range(len(names)), names)
    axis.set_ylim(0, 1)
    axis.set_title("ragtune evaluate: answer quality per configuration")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def save(params: Params, report: dict[str, Any], root: Path) -> dict[str, Path]:
    """reports/evaluation.{json,md,png}, and an MLflow run `evaluate` holding them (its id
    is added to the report as `mlflow_run_id`)."""
    import json

    from ragtune.stages import REPORTS, open_tracker

    folder = root / REPORTS / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "evaluation.json",
        "markdown": folder / "evaluation.md",
        "chart": folder / "evaluation.png",
    }
    tracker = open_tracker(params)
    with tracker.run(
        "evaluate", tags={"ragtune.index_version": str(report["index_version"])}
    ) as run:
        report["mlflow_run_id"] = run
        paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
        paths["markdown"].write_text(markdown(report), "utf-8")
        chart(report, paths["chart"])
        for name, values in report["configurations"].items():
            tracker.log_metrics(
                run, {f"{name}.{k}": float(v) for k, v in values.items() if v is not None}
            )
        tracker.log_table(run, columns(report), "evaluation_table.json")
        tracker.log_artifacts(run, folder, "evaluation")
    return paths


def columns(report: dict[str, Any]) -> dict[str, list[Any]]:
    """The configurations table as columns (MLflow and Prefect tables take this form)."""
    names = list(report["configurations"])
    table: dict[str, list[Any]] = {"configuration": names}
    for metric in METRICS:
        table[metric] = [report["configurations"][n].get(metric) for n in names]
    return table
