"""Answer every evaluation question with every configuration and score each answer.

Questions are the frozen test split of the last training snapshot (all of it, at most
`evaluate.max_questions`, default and cap 500) plus the freshness probes (labelled rows
newer than the snapshot), asked against the index as it is now. Each question is
retrieved once; the same hits serve every configuration with sources, and each
configuration answers all questions in one batched `generate` call.

Per question and configuration: token_f1, contains, citation_accuracy (with sources, on
questions with a gold document), groundedness (with sources; `core.grounding`),
abstention (on unanswerable questions: category `unanswerable`, or a reference answer
that itself abstains) and prompt tokens. Batched generation says nothing about the wait
one user has, so latency is measured apart: `evaluate.latency_questions` test questions
answered one at a time, end to end as `ask` does (retrieval, prompt, generation,
citations), and reported as their p50.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.adapters.index.base import SearchHit
from ragtune.adapters.models import token_ids
from ragtune.answer import Answerer, Generator, cite, load_generator, raft_version
from ragtune.config import Params
from ragtune.core.grounding import abstains, groundedness
from ragtune.core.metrics import contains, token_f1
from ragtune.core.prompts import chat
from ragtune.errors import RagtuneError

UNANSWERABLE = "unanswerable"
FRESH = "fresh"
Row = dict[str, Any]
Result = dict[str, Any]  # {"answer", "citations", "scores": {metric: float | None}}


@dataclass(frozen=True)
class Questions:
    tests: list[Row]  # the evaluated part of the test split
    fresh: list[Row]  # freshness probes
    test_split: int  # questions the test split holds


def evaluation_rows(params: Params, root: Path) -> Questions:
    """The test rows of the last snapshot and the labelled rows that arrived after it,
    each at most `evaluate.max_questions` (default and cap 500)."""
    import pandas as pd

    from ragtune.stages import SNAPSHOT
    from ragtune.stages.snapshot import read_labelled

    snapshot = root / SNAPSHOT
    if not snapshot.is_file():
        raise RagtuneError("no training snapshot yet: run `ragtune train` first")
    frame = pd.read_parquet(snapshot)
    tests = [
        {c: (None if pd.isna(v) else str(v)) for c, v in row.items()}
        for row in frame[frame["split"] == "test"].to_dict(orient="records")
    ]
    known = set(frame["key"].astype(str))
    fresh = [r for r in read_labelled(params.training_source()) if r["key"] not in known]
    limit = params.evaluate.question_limit
    return Questions(tests[:limit], fresh[:limit], len(tests))


def unanswerable(row: Row) -> bool:
    """Labelled so, or its reference answer says the sources do not hold the answer."""
    return row.get("category") == UNANSWERABLE or abstains(row.get("answer") or "")


def run_configuration(
    answerer: Answerer,
    generator: Generator,
    rows: list[Row],
    with_sources: bool,
    hits: Sequence[list[SearchHit]] | None = None,
) -> list[Result]:
    """Every row answered in one batched call, each answer scored; `hits` (one list per
    row) are the retrieved sources, retrieved here when not given."""
    params = answerer.params
    if not with_sources:
        hits = [[] for _ in rows]
    elif hits is None:
        hits = [answerer.retrieve(row["question"], None, None) for row in rows]
    prompts = [
        chat(row["question"], found, params.build_dataset)
        for row, found in zip(rows, hits, strict=True)
    ]
    answers = generator.generate(prompts, params.evaluate.max_new_tokens)
    return [
        scored(row, raw, found, prompt_tokens(generator, prompt), with_sources)
        for row, raw, found, prompt in zip(rows, answers, hits, prompts, strict=True)
    ]


def prompt_tokens(generator: Generator, prompt: list[dict[str, str]]) -> int:
    return len(
        token_ids(generator.tokenizer.apply_chat_template(prompt, add_generation_prompt=True))
    )


def scored(row: Row, raw: str, hits: list[SearchHit], tokens: int, with_sources: bool) -> Result:
    """One answer, its citations as `ask` shows them, and its scores."""
    text, cited, _ = cite(raw, [h.text for h in hits])
    reference = row.get("answer") or ""
    document = row.get("document")
    scores: dict[str, float | None] = {
        "token_f1": token_f1(text, reference),
        "contains": contains(text, reference),
        "citation_accuracy": float(any(hits[n - 1].key == document for n in cited))
        if with_sources and document
        else None,
        "groundedness": groundedness(text, [hits[n - 1].text for n in cited])
        if with_sources
        else None,
        "abstention_rate": float(abstains(text)) if unanswerable(row) else None,
        "prompt_tokens": float(tokens),
    }
    citations = [
        {"n": n, "source": hits[n - 1].source, "key": hits[n - 1].key, "chunk": hits[n - 1].chunk}
        for n in cited
    ]
    return {"answer": text, "citations": citations, "scores": scores}


def latencies(
    answerer: Answerer, generator: Generator, rows: list[Row], with_sources: bool
) -> list[float]:
    """Milliseconds per question answered alone (batch 1), retrieval included, as `ask`."""
    params, measured = answerer.params, []
    for row in rows:
        started = time.perf_counter()
        hits = answerer.retrieve(row["question"], None, None) if with_sources else []
        prompt = chat(row["question"], hits, params.build_dataset)
        raw = generator.generate([prompt], params.evaluate.max_new_tokens)[0]
        cite(raw, [h.text for h in hits])
        measured.append((time.perf_counter() - started) * 1000)
    return measured


def evaluate(
    params: Params,
    root: Path,
    on_configuration: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Every configuration on the test split and the freshness probes, summarised with
    intervals and a verdict (`report.summarise`); `on_configuration(done, total, name)`
    is called as each configuration finishes."""
    from ragtune.evaluation.report import summarise

    questions = evaluation_rows(params, root)
    if not questions.tests:
        raise RagtuneError("the snapshot's test split is empty; add labelled rows")
    rows = questions.tests + questions.fresh
    answerer = Answerer(params, "base")
    models = {"base": answerer.generator}
    champion = load_generator(params, "champion")
    if champion.version is not None:
        models["finetuned"] = champion
    plans: list[tuple[str, Generator, bool]] = []
    for name, generator in models.items():
        rag_name = "rag" if name == "base" else "finetuned_rag"
        plans += [(name, generator, False), (rag_name, generator, True)]
    raft = raft_version(params)
    if raft is not None and raft != champion.version:  # the champion is finetuned_rag already
        plans.append(("raft", load_generator(params, version=raft), True))
    started = time.perf_counter()
    hits = [answerer.retrieve(row["question"], None, None) for row in rows]  # once for all
    seconds: dict[str, Any] = {"retrieve": round(time.perf_counter() - started, 2)}
    timed = questions.tests[: params.evaluate.latency_questions]
    results: dict[str, list[Result]] = {}
    waits: dict[str, list[float]] = {}
    for done, (label, generator, with_sources) in enumerate(plans, 1):
        started = time.perf_counter()
        results[label] = run_configuration(answerer, generator, rows, with_sources, hits)
        answered = time.perf_counter()
        waits[label] = latencies(answerer, generator, timed, with_sources)
        seconds[label] = {
            "batched": round(answered - started, 2),
            "latency_sample": round(time.perf_counter() - answered, 2),
        }
        if on_configuration is not None:
            on_configuration(done, len(plans), label)
    return summarise(
        params,
        questions,
        results,
        waits,
        {
            "index_version": answerer.index.version(),
            "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "champion_version": champion.version,
            "raft_version": raft,
            "seconds": seconds,  # wall time: retrieval, then per configuration
        },
    )
