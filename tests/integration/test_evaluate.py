"""`ragtune evaluate` and `ragtune ask` on a tiny model and a real LanceDB index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.adapters.changelog import Changelog
from ragtune.adapters.sources import SqlSource
from ragtune.answer import Answerer, cite
from ragtune.config import load_params
from ragtune.evaluation import evaluate, save
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


def test_evaluate_measures_four_configurations_and_freshness(
    tiny_base: Path, tmp_path: Path, embedder: Any
) -> None:
    params_path = make_project(tmp_path / "p", tiny_base, extra=DOCS_SOURCE)
    root = params_path.parent
    add_documents(root / "labels.db")
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
    raft = run_training(
        params_path, {"build_dataset": {"rag_context": "raft"}}, echo=lambda _: None
    )
    assert raft.promotion is not None and raft.promotion["version"] == "2"
    assert raft.promotion["lineage"]["ragtune.rag_context"] == "raft"
    insert_rows(root / "labels.db", qa_rows(900, 3))  # after the snapshot: freshness probes

    params = load_params(params_path)
    progress: list[tuple[int, int, str]] = []
    report = evaluate(params, root, on_configuration=lambda *step: progress.append(step))

    assert set(report["configurations"]) == {"base", "rag", "finetuned", "finetuned_rag", "raft"}
    assert report["raft_version"] == "2"
    assert progress == [(n, 5, name) for n, name in enumerate(report["configurations"], 1)]
    for name, values in report["configurations"].items():
        assert 0 <= values["token_f1"] <= 1 and values["questions"] > 0, name
        assert values["prompt_tokens"] > 0 and values["latency_p50_ms"] > 0
        assert (values["citation_accuracy"] is None) == (name in ("base", "finetuned"))
    assert set(report["freshness"]) == set(report["configurations"])
    rag, plain = report["configurations"]["rag"], report["configurations"]["base"]
    assert rag["prompt_tokens"] > plain["prompt_tokens"]  # sources are in the prompt
    assert report["freshness"]["rag"]["questions"] == 2  # 3 new rows, evaluate.max_questions 2
    assert report["champion_version"] in ("1", "2") and report["index_version"]

    paths = save(params, report, root)
    assert json.loads(paths["json"].read_text())["configurations"]["rag"] == rag
    assert "| finetuned_rag |" in paths["markdown"].read_text()
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG"


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
