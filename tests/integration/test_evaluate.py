"""`ragtune evaluate` and `ragtune ask` on a tiny model and a real LanceDB index."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from rich.console import Console

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.sources import SqlSource
from ragtune.answer import Answerer, cite
from ragtune.config import load_params
from ragtune.core.dataset import split_of
from ragtune.evaluation import evaluate, evaluation_rows, save, tables
from ragtune.stages import open_tracker
from ragtune.training import run_training
from ragtune.workspace import open_syncs
from tests.integration.api_support import citing_base
from tests.training_support import DOCS_SOURCE, add_documents, insert_rows, make_project, qa_rows


def sync(params_path: Path, embedder: Any) -> None:
    params = load_params(params_path)
    source = SqlSource.open("docs", params.sources["docs"])
    Changelog(source, params.workspace.path).install()
    source.close()
    for one in open_syncs(params, embedder=embedder):
        one.run(full=True)
        one.source.close()


CONFIGURATIONS = {"base", "rag", "finetuned", "finetuned_rag", "raft"}
METRICS = {
    "token_f1",
    "contains",
    "citation_accuracy",
    "groundedness",
    "abstention_rate",
    "latency_p50_ms",
    "prompt_tokens",
}
UNANSWERED = "The sources do not say."


def label_categories(database: Path) -> dict[str, set[str]]:
    """A `category` column: `even` / `odd` by key; two test rows labelled `unanswerable`
    and one (category `odd`) recognised by its reference answer alone. Returns the test
    keys per category as the evaluation should group them."""
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE qa_pairs ADD COLUMN category TEXT")
        keys = [k for (k,) in db.execute("SELECT id FROM qa_pairs ORDER BY id")]
        tests = [k for k in keys if split_of(k, "ragtune", 0.15, 0.15) == "test"]
        assert len(tests) >= 5, tests  # 40 rows, test_fraction 0.15
        for key in keys:
            db.execute(
                "UPDATE qa_pairs SET category = ? WHERE id = ?",
                ("even" if int(key[1:]) % 2 == 0 else "odd", key),
            )
        labelled, by_answer = tests[:2], tests[2]
        for key in labelled:
            db.execute(
                "UPDATE qa_pairs SET category = 'unanswerable', answer = ? WHERE id = ?",
                (UNANSWERED, key),
            )
        db.execute(
            "UPDATE qa_pairs SET category = 'odd', answer = ? WHERE id = ?", (UNANSWERED, by_answer)
        )
    groups: dict[str, set[str]] = {"even": set(), "odd": set()}
    for key in tests[2:]:
        groups["odd" if key == by_answer or int(key[1:]) % 2 else "even"].add(key)
    groups["unanswerable"] = {*labelled, by_answer}  # by_answer is in `odd` too
    return groups


def test_evaluate_gives_intervals_comparisons_a_verdict_and_categories(
    tiny_base: Path, tmp_path: Path, embedder: Any
) -> None:
    params_path = make_project(tmp_path / "p", tiny_base, extra=DOCS_SOURCE)
    root = params_path.parent
    add_documents(root / "labels.db")
    expected_groups = label_categories(root / "labels.db")
    text = params_path.read_text()
    params_path.write_text(
        text.replace("  document: document\n", "  document: document\n  category: category\n", 1)
    )
    sync(params_path, embedder)
    # forced: two steps on a random tiny model need not beat the base
    trained = run_training(params_path, {"promote": {"force": True}}, echo=lambda _: None)
    # the promotion compared the candidate with retrieved sources in its prompt
    assert trained.promotion is not None and trained.promotion["metric"] == "rag_answer_loss"
    stage_report = json.loads((root / "reports/evaluate.json").read_text())
    assert {"rag_answer_loss", "rag_token_f1"} <= set(stage_report["candidate"])
    assert 0 < stage_report["candidate"]["rag_answer_loss"] < 100  # scored, not NaN
    assert trained.promotion["lineage"]["ragtune.index_version"] == stage_report["index_version"]
    # a second version trained on RAFT examples (question + gold and distractor chunks)
    # ... kept a challenger (no margin is met), so `raft` is a configuration of its own
    raft = run_training(
        params_path,
        {"build_dataset": {"rag_context": "raft"}, "promote": {"margin": 1e9}},
        echo=lambda _: None,
    )
    assert raft.promotion is not None and raft.promotion["version"] == "2"
    assert raft.promotion["lineage"]["ragtune.rag_context"] == "raft"
    insert_rows(root / "labels.db", qa_rows(900, 3))  # after the snapshot: freshness probes

    # evaluate.max_questions caps the test split and the probes alike
    capped = evaluation_rows(load_params(params_path), root)  # max_questions: 2
    test_split = len(expected_groups["even"] | expected_groups["odd"]) + 2
    assert (len(capped.tests), len(capped.fresh), capped.test_split) == (2, 2, test_split)

    params = load_params(
        params_path, overrides={"evaluate": {"max_questions": 50, "latency_questions": 2}}
    )
    progress: list[tuple[int, int, str]] = []
    report = evaluate(params, root, on_configuration=lambda *step: progress.append(step))

    assert next(iter(report)) == "verdict"  # first in JSON, as in the terminal and Markdown
    assert set(report["configurations"]) == CONFIGURATIONS
    assert report["raft_version"] == "2"
    assert report["champion_version"] == "1" and report["index_version"]
    assert progress == [(n, 5, name) for n, name in enumerate(report["configurations"], 1)]
    assert set(report["seconds"]) == {"retrieve"} | CONFIGURATIONS
    assert (report["questions"], report["test_split"], report["capped"]) == (
        test_split,
        test_split,
        False,
    )
    for name, values in report["configurations"].items():
        assert set(values) >= METRICS and values["questions"] == test_split, name
        for metric in METRICS - {"latency_p50_ms"}:
            found = values[metric]
            sourced = name not in ("base", "finetuned")
            if metric in ("citation_accuracy", "groundedness") and not sourced:
                assert found == {"mean": None, "ci95": None}, (name, metric)
                continue
            low, high = found["ci95"]
            assert low <= found["mean"] <= high, (name, metric, found)
            if metric != "prompt_tokens":
                assert low >= 0 and high <= 1, (name, metric, found)
        latency = values["latency_p50_ms"]
        assert latency["mean"] > 0 and latency["ci95"] is None and latency["sample"] == 2
    rag, plain = report["configurations"]["rag"], report["configurations"]["base"]
    assert rag["prompt_tokens"]["mean"] > plain["prompt_tokens"]["mean"]  # sources in prompt

    # every pair of configurations on every metric they share, wins + ties + losses = n
    on_f1 = [c for c in report["comparisons"] if c["metric"] == "token_f1"]
    assert {frozenset((c["a"], c["b"])) for c in on_f1} == {
        frozenset((a, b)) for a in CONFIGURATIONS for b in CONFIGURATIONS if a < b
    }
    for c in on_f1:
        assert c["wins"] + c["ties"] + c["losses"] == test_split
        assert c["ci95"][0] <= c["difference"] <= c["ci95"][1]
    on_citations = {
        frozenset((c["a"], c["b"]))
        for c in report["comparisons"]
        if c["metric"] == "citation_accuracy"
    }
    assert on_citations == {
        frozenset(p) for p in (("rag", "finetuned_rag"), ("rag", "raft"), ("finetuned_rag", "raft"))
    }
    verdict = report["verdict"]
    assert verdict["metric"] == "token_f1" and verdict["best"] in CONFIGURATIONS | {None}
    if verdict["best"] is None:
        assert verdict["statement"].startswith("no significant difference between")
    else:
        assert verdict["statement"].startswith(f"{verdict['best']} is best on token_f1")

    # categories: each value of the category column, `unanswerable` and `fresh`
    by_category = report["by_category"]
    assert set(by_category) == {"even", "odd", "unanswerable", "fresh"}
    for category, found in by_category.items():
        assert set(found) == CONFIGURATIONS, category
        size = 3 if category == "fresh" else len(expected_groups[category])
        for name, values in found.items():
            assert values["questions"] == size and set(values) >= METRICS - {"latency_p50_ms"}
            if size:
                assert values["token_f1"]["mean"] is not None, (category, name)
    for name, values in by_category["unanswerable"].items():
        assert 0 <= values["abstention_rate"]["mean"] <= 1, name
        assert values["abstention_rate"] == report["configurations"][name]["abstention_rate"]
    assert by_category["even"]["rag"]["abstention_rate"] == {"mean": None, "ci95": None}
    assert report["freshness"] == by_category["fresh"]

    # per-question answers: questions.json and an evaluation table in MLflow
    paths = save(params, report, root)
    saved = json.loads(paths["json"].read_text())
    assert saved == json.loads(json.dumps(report)) and "per_question" not in saved
    assert paths["markdown"].read_text().splitlines()[2].startswith("**Verdict (token_f1):**")
    assert "| finetuned_rag |" in paths["markdown"].read_text()
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG"
    answers = json.loads(paths["questions"].read_text())
    assert len(answers) == 5 * (test_split + 3)
    assert {a["configuration"] for a in answers} == CONFIGURATIONS
    assert {a["key"] for a in answers if a["unanswerable"] and not a["fresh"]} == expected_groups[
        "unanswerable"
    ]

    from mlflow import MlflowClient

    client = MlflowClient(params.tracking_uri())
    run = client.get_run(report["mlflow_run_id"])
    tags = {
        "ragtune.verdict": verdict["statement"],
        "ragtune.verdict.best": verdict["best"] or "none",
        "ragtune.verdict.metric": "token_f1",
    }
    assert tags.items() <= run.data.tags.items()
    assert run.data.metrics["rag.token_f1"] == rag["token_f1"]["mean"]
    table = json.loads(
        Path(
            client.download_artifacts(run.info.run_id, "evaluation_questions.json", str(tmp_path))
        ).read_text()
    )
    assert len(table["data"]) == len(answers) and "answer" in table["columns"]
    version = client.get_model_version("ragtune-generator", report["champion_version"])
    assert (tags | {"ragtune.verdict.run_id": run.info.run_id}).items() <= version.tags.items()

    # the terminal shows the verdict first
    console = Console(record=True, width=200)
    for shown in tables(report):
        console.print(shown)
    assert console.export_text().startswith(f"Verdict (token_f1): {verdict['statement']}")

    # with the RAFT version as champion, finetuned_rag is that version: no `raft` twin of it
    open_tracker(params).set_alias("champion", "2")
    quick = load_params(params_path, overrides={"evaluate": {"latency_questions": 0}})
    again = evaluate(quick, root)
    assert (again["champion_version"], again["raft_version"]) == ("2", "2")
    assert set(again["configurations"]) == CONFIGURATIONS - {"raft"}


def test_answers_cite_only_retrieved_chunks(tmp_path: Path, embedder: Any) -> None:
    base = citing_base(tmp_path / "base")  # answers every question with "[1]"
    params_path = make_project(tmp_path / "p", base, extra=DOCS_SOURCE)
    add_documents(params_path.parent / "labels.db")
    sync(params_path, embedder)
    answerer = Answerer(load_params(params_path), "champion")
    answer = answerer.ask("Which colour is the badge of team 12?", k=3)
    assert answer.model == {"name": f"base:{base}", "version": None}  # no champion yet
    assert answer.as_of is not None and len(answer.sources) == 3
    assert answer.citations, answer.answer
    assert all(1 <= c["n"] <= 3 for c in answer.citations)
    for citation in answer.citations:  # each names the chunk shown as its [n]
        hit = answer.sources[citation["n"] - 1]
        assert (citation["key"], citation["chunk"]) == (hit.key, hit.chunk)
    assert set(answer.to_json()["timings"]) == {"retrieve_ms", "generate_ms"}

    import mlflow
    from mlflow import MlflowClient

    assert answer.trace_id, "the answer was traced"
    mlflow.flush_trace_async_logging()
    trace = MlflowClient(load_params(params_path).tracking_uri()).get_trace(answer.trace_id)
    spans = {span.name: span for span in trace.data.spans}
    assert {"ask", "retrieve", "generate"} <= set(spans)
    assert spans["retrieve"].parent_id == spans["ask"].span_id


def test_citations_outside_the_sources_are_removed() -> None:
    text, cited, how = cite("Blue [2], see also [7] and [0].", ["a", "team wears blue"])
    assert (text, cited, how) == ("Blue [2], see also and.", [2], "model")
    text, cited, how = cite("Team 3 wears a blue badge.", ["nothing here", "team 3 wears blue"])
    assert cited == [2] and how == "post-hoc" and text.endswith("[2]")
    assert cite("Unrelated words.", ["zzz"]) == ("Unrelated words.", [], "none")
