"""`evaluate` stage: candidate vs champion vs base on the frozen test split.

For each model, per test question: `answer_loss` (the question's mean negative
log-likelihood per answer token, on every test example) and, on the first
`evaluate.max_questions` test questions answered by greedy generation, `token_f1` and
`contains` against the labelled answer. When the index holds the sources, the same
questions are also asked with retrieved sources in the prompt, as `ask` does:
`rag_answer_loss`, `rag_token_f1`, `rag_contains` — the `finetuned_rag` configuration,
which the promotion decision compares by default.

reports/evaluate.json holds each model's means (the mean over its scored questions) and a
`per_question` section: the test keys in order and, per model and metric, one score per
question (a metric measured on the first n questions has n scores; null where a question
had no answer token left to score). The `promote` stage decides on those paired scores
without recomputing anything.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ragtune.adapters.models import (
    example_losses,
    generate,
    load_model,
    load_tokenizer,
    pick_device,
    use_bf16,
)
from ragtune.config import Params
from ragtune.core.dataset import Example, answer_of, question_of
from ragtune.core.metrics import contains, mean, token_f1
from ragtune.core.prompts import chat
from ragtune.errors import RagtuneError
from ragtune.stages import ADAPTER, EVALUATION, StageContext, write_json
from ragtune.stages.build_dataset import load_examples
from ragtune.stages.train import base_folder

RAG_MAX_TOKENS = 4096
PerQuestion = dict[str, list[float | None]]  # metric -> one score per question, in order


def score(
    params: Params,
    base: Path,
    adapter: Path | None,
    tokenizer: Any,
    tests: list[Example],
    with_sources: list[Example] | None = None,
) -> tuple[PerQuestion, float]:
    """One model's per-question scores on the test questions, and the seconds it took."""
    config, device = params.evaluate, pick_device(params.train.device)
    bf16 = use_bf16(params.train.precision, device)
    model = load_model(base, device, adapter)  # float32: losses scored as in training
    started = time.perf_counter()
    losses = example_losses(model, tokenizer, tests, params.train, device)
    scores: PerQuestion = {"answer_loss": _rounded(losses)}
    if with_sources:
        # prompts with sources run long: score them whole, not cut at the training length
        whole = params.train.model_copy(update={"max_seq_len": RAG_MAX_TOKENS})
        losses = example_losses(model, tokenizer, with_sources, whole, device)
        scores["rag_answer_loss"] = _rounded(losses)
    if bf16:  # answers are generated from weights held in bf16, as `ask` does
        del model
        model = load_model(base, device, adapter, bf16=True)
    asked = tests[: config.question_limit]
    scores |= _generated(params, model, tokenizer, asked, device, bf16, "")
    if with_sources:
        scores |= _generated(params, model, tokenizer, with_sources, device, bf16, "rag_")
    return scores, round(time.perf_counter() - started, 2)


def means(scores: PerQuestion) -> dict[str, float]:
    """Each metric's mean over the questions it scored (the report's readable summary)."""
    return {
        metric: round(mean([v for v in values if v is not None]), 5)
        for metric, values in scores.items()
    }


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 6) for v in values]


def _generated(
    params: Params,
    model: Any,
    tokenizer: Any,
    asked: list[Example],
    device: str,
    bf16: bool,
    prefix: str,
) -> PerQuestion:
    answers = generate(
        model,
        tokenizer,
        [e.messages[:-1] for e in asked],
        params.evaluate.max_new_tokens,
        params.evaluate.batch_size,
        device,
        bf16,
    )
    expected = [answer_of(e) for e in asked]
    pairs = list(zip(answers, expected, strict=True))
    return {
        f"{prefix}token_f1": [round(token_f1(a, b), 6) for a, b in pairs],
        f"{prefix}contains": [contains(a, b) for a, b in pairs],
    }


def with_retrieved_sources(params: Params, tests: list[Example]) -> list[Example] | None:
    """The first `max_questions` test questions with sources retrieved as `ask` does;
    None when there is no indexed source to retrieve from (or the examples already carry
    context, as RAFT examples do)."""
    if not params.sources or params.build_dataset.rag_context == "raft":
        return None
    from ragtune.adapters.index.base import SearchFilter
    from ragtune.search import search
    from ragtune.workspace import open_embedder, open_index

    index = open_index(params)
    try:
        if not any(index.stats(name).chunks for name in params.sources):
            return None
        embedder, where = open_embedder(params), SearchFilter(tuple(params.sources))
        found = []
        for example in tests[: params.evaluate.question_limit]:
            question = question_of(example)
            hits = search(index, embedder, question, params.search, where)
            prompt = chat(question, hits, params.build_dataset, answer=answer_of(example))
            found.append(Example(example.key, example.split, prompt, example.document))
        return found
    finally:
        index.close()


def evaluate(ctx: StageContext) -> None:
    tests = load_examples("test")
    if not tests:
        raise RagtuneError(
            "the test split is empty; add labelled rows or raise snapshot.test_fraction"
        )
    base = base_folder(ctx.params)
    tokenizer = load_tokenizer(base)
    rag = with_retrieved_sources(ctx.params, tests)
    models: dict[str, Path | None] = {"candidate": ADAPTER, "base": None}
    champion = ctx.tracker.champion() if ctx.tracker else None
    per_question: dict[str, Any] = {"keys": [e.key for e in tests]}
    report: dict[str, Any] = {
        "questions": len(tests),
        "champion_version": champion["version"] if champion else None,
        "index_version": _index_version(ctx.params) if rag else None,
        "champion": None,
    }
    with tempfile.TemporaryDirectory() as scratch:
        if champion is not None:
            models["champion"] = Path(ctx.tracker.download(champion["version"], Path(scratch)))
        for name, adapter in models.items():
            scores, seconds = score(ctx.params, base, adapter, tokenizer, tests, rag)
            per_question[name] = scores
            report[name] = {**means(scores), "seconds": seconds}
    per_question.setdefault("champion", None)
    write_json(EVALUATION, {**report, "per_question": per_question})
    ctx.log_params({"evaluate": ctx.params.evaluate.model_dump()})
    for name in models:
        ctx.log_metrics({f"{name}_{k}": float(v) for k, v in report[name].items()})
    print(
        "evaluate: "
        + "; ".join(_summary(n, report[n]) for n in ("candidate", "champion", "base") if report[n])
    )


def _summary(name: str, means: dict[str, float]) -> str:
    line = f"{name} loss {means['answer_loss']:.3f} F1 {means['token_f1']:.3f}"
    if "rag_answer_loss" in means:
        line += (
            f" (with sources: loss {means['rag_answer_loss']:.3f} F1 {means['rag_token_f1']:.3f})"
        )
    return line


def _index_version(params: Params) -> str:
    from ragtune.workspace import open_index

    index = open_index(params)
    try:
        return index.version()
    finally:
        index.close()
