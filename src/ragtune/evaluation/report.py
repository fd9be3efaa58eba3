"""The evaluation report: verdict first, then quality and cost with 95% intervals.

`summarise` turns per-question scores into the report `ragtune evaluate --json` prints:

    {"verdict": {"best", "metric", "statement"}, "questions": N,
     "configurations": {NAME: {METRIC: {"mean", "ci95": [lo, hi]}, ..., "questions": n}},
     "comparisons": [{"a", "b", "metric", "difference", "ci95", "wins", "ties", "losses"}],
     "by_category": {CATEGORY: {NAME: {METRIC: {"mean", "ci95"}, "questions": n}}},
     "freshness": {NAME: {...}}, "index_version", "champion_version", ...}

Metrics: token_f1, contains, citation_accuracy, groundedness, abstention_rate (on
unanswerable questions), prompt_tokens (means with paired bootstrap intervals) and
latency_p50_ms (the p50 of a small batch-1 sample, no interval). `save` writes
reports/evaluation/{evaluation.json, evaluation.md, evaluation.png, questions.json} and
logs them to an MLflow run `evaluate`, with the per-question answers as an evaluation
table and the verdict as tags on the run and on the champion's model version.

Per-question results go to MLflow as a logged table, not through `mlflow.genai.evaluate`:
on the default SQLite store that costs about 0.24 s per answer (measured, 2 busy cores,
MLflow 3.17: 500 answers in 122 s with 1 or 4 workers; its default worker count ran out
of database connections and dropped traces), i.e. minutes per evaluation, where a table
takes under a second.
"""

from __future__ import annotations

import json
import statistics
import textwrap
from pathlib import Path
from typing import Any

from ragtune.config import MAX_EVALUATION_QUESTIONS, Params
from ragtune.core.summary import PER_QUESTION, by_group
from ragtune.core.summary import summarise as summarise_scores
from ragtune.evaluation.measure import FRESH, UNANSWERABLE, Questions, Result, unanswerable

METRICS = (*PER_QUESTION, "latency_p50_ms")
VERDICT_TAGS = ("ragtune.verdict", "ragtune.verdict.best", "ragtune.verdict.metric")


def summarise(
    params: Params,
    questions: Questions,
    results: dict[str, list[Result]],
    waits: dict[str, list[float]],
    about: dict[str, Any],
) -> dict[str, Any]:
    """The report (module doc) from every configuration's results on tests + fresh rows;
    the per-question answers ride along under `per_question` until `save`."""
    config = params.evaluate
    seed, resamples = config.bootstrap_seed, config.bootstrap_resamples
    scores = {name: [r["scores"] for r in found] for name, found in results.items()}
    tests = range(len(questions.tests))
    fresh = range(len(questions.tests), len(questions.tests) + len(questions.fresh))
    configurations, comparisons, verdict = summarise_scores(
        scores, tests, config.metric, resamples, seed
    )
    for name, measured in waits.items():
        p50 = round(statistics.median(measured), 1) if measured else None
        configurations[name]["latency_p50_ms"] = {
            "mean": p50,
            "ci95": None,
            "sample": len(measured),
        }
    groups = categories(questions.tests, questions.fresh)
    groups[FRESH] = list(fresh)
    capped = questions.test_split > len(questions.tests)
    return {
        "verdict": verdict.to_json(),
        "questions": len(questions.tests),
        "test_split": questions.test_split,
        "capped": capped,
        "configurations": configurations,
        "comparisons": comparisons,
        "by_category": by_group(scores, groups, resamples, seed),
        "freshness": by_group(scores, {FRESH: list(fresh)}, resamples, seed)[FRESH]
        if questions.fresh
        else {},
        **about,
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": 0.95},
        "latency": {
            "questions": max((len(w) for w in waits.values()), default=0),
            "measured": "p50 of questions answered one at a time, retrieval included, as ask",
        },
        "per_question": per_question(questions, results),
    }


def categories(tests: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Test-question indices per category: each `training.category` value (seen in the
    test split or the probes) and always `unanswerable`."""
    names = {row["category"] for row in tests + fresh if row.get("category")}
    groups: dict[str, list[int]] = {name: [] for name in sorted(names | {UNANSWERABLE})}
    for i, row in enumerate(tests):
        if row.get("category") and row["category"] != UNANSWERABLE:
            groups[row["category"]].append(i)
        if unanswerable(row):
            groups[UNANSWERABLE].append(i)
    return groups


def per_question(questions: Questions, results: dict[str, list[Result]]) -> list[dict[str, Any]]:
    """One row per question and configuration: the evaluation table MLflow shows."""
    rows = questions.tests + questions.fresh
    table = []
    for name, found in results.items():
        for i, (row, result) in enumerate(zip(rows, found, strict=True)):
            table.append(
                {
                    "key": row["key"],
                    "question": row["question"],
                    "reference": row.get("answer"),
                    "category": row.get("category"),
                    "unanswerable": unanswerable(row),
                    "fresh": i >= len(questions.tests),
                    "configuration": name,
                    "answer": result["answer"],
                    "citations": " ".join(
                        f"[{c['n']}] {c['source']}/{c['key']}#{c['chunk']}"
                        for c in result["citations"]
                    ),
                    **result["scores"],
                }
            )
    return table


# -- rendering ------------------------------------------------------------------------------


def cell(value: dict[str, Any] | None) -> str:
    """`0.412 [0.351, 0.470]`, or `—` where the metric does not apply."""
    if not value or value.get("mean") is None:
        return "—"
    digits = 1 if abs(value["mean"]) >= 10 else 3  # token counts and milliseconds
    if not value.get("ci95"):
        return f"{value['mean']:.{digits}f}"
    low, high = value["ci95"]
    return f"{value['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def notes(report: dict[str, Any]) -> list[str]:
    lines = [
        f"{report['questions']} test questions"
        + (
            f" (the first {report['questions']} of {report['test_split']}: "
            f"evaluate.max_questions, default and maximum {MAX_EVALUATION_QUESTIONS})"
            if report["capped"]
            else ""
        )
        + f", index version {report['index_version']}, champion version "
        f"{report['champion_version'] or 'none'}, at {report['evaluated_at']}.",
        "Means with paired bootstrap 95% intervals "
        f"({report['bootstrap']['resamples']} resamples, seed {report['bootstrap']['seed']}); "
        "abstention_rate is measured on unanswerable questions only.",
        f"latency_p50_ms: p50 over {report['latency']['questions']} questions answered one at "
        "a time, retrieval included (what a user of `ask` waits); the batched evaluation "
        "itself is faster per question.",
    ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    lines = [
        "# ragtune evaluation",
        "",
        f"**Verdict ({verdict['metric']}):** {verdict['statement']}",
        "",
    ]
    lines += [*notes(report), ""]
    lines += ["| configuration | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, values in report["configurations"].items():
        lines.append(f"| {name} | " + " | ".join(cell(values.get(m)) for m in METRICS) + " |")
    metric = verdict["metric"]
    lines += ["", f"Paired differences on {metric} (a − b, wins/ties/losses per question):", ""]
    lines += ["| a | b | difference [95% CI] | wins | ties | losses |", "|---|---|---|---|---|---|"]
    for c in (c for c in report["comparisons"] if c["metric"] == metric):
        lines.append(
            f"| {c['a']} | {c['b']} | {cell({'mean': c['difference'], 'ci95': c['ci95']})} "
            f"| {c['wins']} | {c['ties']} | {c['losses']} |"
        )
    names = list(report["configurations"])
    lines += ["", f"By category ({metric}; abstention_rate for unanswerable):", ""]
    lines += [
        "| category | questions | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for category, found in report["by_category"].items():
        shown = "abstention_rate" if category == UNANSWERABLE else metric
        count = next(iter(found.values()))["questions"] if found else 0
        cells = " | ".join(cell(found[n].get(shown)) for n in names if n in found)
        lines.append(f"| {category} | {count} | {cells} |")
    return "\n".join(lines) + "\n"


def tables(report: dict[str, Any]) -> list[Any]:
    """The report for the terminal: the verdict, then configurations, pairs, categories."""
    from rich.table import Table
    from rich.text import Text

    verdict = report["verdict"]
    shown: list[Any] = [
        Text(f"Verdict ({verdict['metric']}): {verdict['statement']}", style="bold")
    ]
    table = Table(title=f"evaluation (index version {report['index_version']})")
    table.add_column("configuration")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for name, values in report["configurations"].items():
        table.add_row(name, *(cell(values.get(m)) for m in METRICS))
    shown.append(table)
    metric = verdict["metric"]
    pairs = Table(title=f"paired differences on {metric} (a - b)")
    for column in ("a", "b", "difference [95% CI]", "wins", "ties", "losses"):
        pairs.add_column(column)
    for c in (c for c in report["comparisons"] if c["metric"] == metric):
        difference = cell({"mean": c["difference"], "ci95": c["ci95"]})
        pairs.add_row(c["a"], c["b"], difference, str(c["wins"]), str(c["ties"]), str(c["losses"]))
    shown.append(pairs)
    names = list(report["configurations"])
    groups = Table(title=f"by category ({metric}; abstention_rate for unanswerable)")
    for column in ("category", "questions", *names):
        groups.add_column(column)
    for category, found in report["by_category"].items():
        which = "abstention_rate" if category == UNANSWERABLE else metric
        count = next(iter(found.values()))["questions"] if found else 0
        groups.add_row(category, str(count), *(cell(found[n].get(which)) for n in names))
    shown += [groups, Text("\n".join(notes(report)), style="dim")]
    return shown


def chart(report: dict[str, Any], path: Path) -> Path:
    """Bars of token_f1, contains and groundedness per configuration, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["configurations"])
    shown = ("token_f1", "contains", "groundedness")
    figure, axis = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(shown)
    for k, metric in enumerate(shown):
        values = [report["configurations"][n][metric] for n in names]
        means = [float("nan") if v["mean"] is None else v["mean"] for v in values]
        errors = [
            [m - v["ci95"][0] if v["ci95"] else 0.0 for m, v in zip(means, values, strict=True)],
            [v["ci95"][1] - m if v["ci95"] else 0.0 for m, v in zip(means, values, strict=True)],
        ]
        offsets = [i + (k - (len(shown) - 1) / 2) * width for i in range(len(names))]
        axis.bar(offsets, means, width, yerr=errors, capsize=3, label=metric)
    axis.set_xticks(range(len(names)), names)
    axis.set_ylim(0, 1)
    title = textwrap.fill(f"ragtune evaluate: {report['verdict']['statement']}", 100)
    axis.set_title(title, fontsize=9)
    axis.set_ylabel("mean, 95% CI")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def columns(report: dict[str, Any]) -> dict[str, list[Any]]:
    """The configurations table as columns (MLflow and Prefect tables take this form)."""
    names = list(report["configurations"])
    table: dict[str, list[Any]] = {"configuration": names}
    for metric in METRICS:
        table[metric] = [report["configurations"][n][metric]["mean"] for n in names]
        if metric != "latency_p50_ms":
            table[f"{metric} ci95"] = [
                _span(report["configurations"][n][metric]["ci95"]) for n in names
            ]
    return table


def _span(ci95: list[float] | None) -> str | None:
    return None if ci95 is None else f"[{ci95[0]:.4f}, {ci95[1]:.4f}]"


# -- saving ---------------------------------------------------------------------------------


def save(params: Params, report: dict[str, Any], root: Path) -> dict[str, Path]:
    """reports/evaluation/{evaluation.json,.md,.png, questions.json}, and an MLflow run
    `evaluate` holding them, the per-question table and the verdict tags (also set on the
    champion's version). The run id is added to the report as `mlflow_run_id`; the
    per-question answers move from the report to questions.json and the MLflow table."""
    from ragtune.stages import REPORTS, open_tracker

    folder = root / REPORTS / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / "evaluation.json",
        "markdown": folder / "evaluation.md",
        "chart": folder / "evaluation.png",
        "questions": folder / "questions.json",
    }
    answers = report.pop("per_question", [])
    verdict = report["verdict"]
    tags = dict(
        zip(
            VERDICT_TAGS,
            (verdict["statement"], verdict["best"] or "none", verdict["metric"]),
            strict=True,
        )
    )
    tracker = open_tracker(params)
    with tracker.run(
        "evaluate", tags={"ragtune.index_version": str(report["index_version"]), **tags}
    ) as run:
        report["mlflow_run_id"] = run
        paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
        paths["markdown"].write_text(markdown(report), "utf-8")
        paths["questions"].write_text(json.dumps(answers, indent=1, default=str) + "\n", "utf-8")
        chart(report, paths["chart"])
        tracker.log_metrics(run, run_metrics(report))
        tracker.log_table(run, columns(report), "evaluation_table.json")
        if answers:
            table = {key: [row[key] for row in answers] for key in answers[0]}
            tracker.log_table(run, table, "evaluation_questions.json")
        tracker.log_artifacts(run, folder, "evaluation")
    if report["champion_version"] is not None:
        for key, value in {**tags, "ragtune.verdict.run_id": run}.items():
            tracker.tag_version(str(report["champion_version"]), key, value)
    return paths


def run_metrics(report: dict[str, Any]) -> dict[str, float]:
    """`NAME.METRIC` (the mean) and `NAME.METRIC.ci95_low` / `.ci95_high`."""
    found: dict[str, float] = {}
    for name, values in report["configurations"].items():
        for metric in METRICS:
            value = values[metric]
            if value["mean"] is None:
                continue
            found[f"{name}.{metric}"] = float(value["mean"])
            if value["ci95"]:
                found[f"{name}.{metric}.ci95_low"] = float(value["ci95"][0])
                found[f"{name}.{metric}.ci95_high"] = float(value["ci95"][1])
    return found
