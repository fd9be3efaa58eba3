"""`evaluate` stage: candidate vs champion vs base on the frozen test split.

For each model: `answer_loss` (mean negative log-likelihood per answer token, on every
test example) and, on the first `evaluate.max_questions` test questions answered by
greedy generation, `token_f1` and `contains` against the labelled answer. When the index
holds the sources, the same questions are also asked with retrieved sources in the
prompt, as `ask` does: `rag_answer_loss`, `rag_token_f1`, `rag_contains` — the
`finetuned_rag` configuration, which the promotion decision compares by default.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ragtune.adapters.models import (
    answer_loss,
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


def score(
    params: Params,
    base: Path,
    adapter: Path | None,
    tokenizer: Any,
    tests: list[Example],
    with_sources: list[Example] | None = None,
) -> dict[str, float]:
    config, device = params.evaluate, pick_device(params.train.device)
    model = load_model(base, device, adapter)
    started = time.perf_counter()
    scores = {"answer_loss": round(answer_loss(model, tokenizer, tests, params.train, device), 5)}
    scores |= _generated(params, model, tokenizer, tests[: config.max_questions], device, "")
    if with_sources:
        # prompts with sources run long: score them whole, not cut at the training length
        whole = params.train.model_copy(update={"max_seq_len": RAG_MAX_TOKENS})
        loss = answer_loss(model, tokenizer, with_sources, whole, device)
        scores["rag_answer_loss"] = round(loss, 5)
        scores |= _generated(params, model, tokenizer, with_sources, device, "rag_")
    scores["seconds"] = round(time.perf_counter() - started, 2)
    return scores


def _generated(
    params: Params, model: Any, tokenizer: Any, asked: list[Example], device: str, prefix: str
) -> dict[str, float]:
    answers = generate(
        model,
        tokenizer,
        [e.messages[:-1] for e in asked],
        params.evaluate.max_new_tokens,
        params.evaluate.batch_size,
        device,
        use_bf16(params.train.precision, device),
    )
    expected = [answer_of(e) for e in asked]
    pairs = list(zip(answers, expected, strict=True))
    return {
        f"{prefix}token_f1": round(mean([token_f1(a, b) for a, b in pairs]), 5),
        f"{prefix}contains": round(mean([contains(a, b) for a, b in pairs]), 5),
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
        for example in tests[: params.evaluate.max_questions]:
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
    report: dict[str, Any] = {"questions": len(tests), "champion_version": None}
    rag = with_retrieved_sources(ctx.params, tests)
    report["index_version"] = _index_version(ctx.params) if rag else None
    report["candidate"] = score(ctx.params, base, ADAPTER, tokenizer, tests, rag)
    report["base"] = score(ctx.params, base, None, tokenizer, tests, rag)
    champion = ctx.tracker.champion() if ctx.tracker else None
    report["champion"] = None
    if champion is not None:
        with tempfile.TemporaryDirectory() as scratch:
            adapter = Path(ctx.tracker.download(champion["version"], Path(scratch)))
            report["champion"] = score(ctx.params, base, adapter, tokenizer, tests, rag)
        report["champion_version"] = champion["version"]
    write_json(EVALUATION, report)
    ctx.log_params({"evaluate": ctx.params.evaluate.model_dump()})
    for name in ("candidate", "base", "champion"):
        if report[name]:
            ctx.log_metrics({f"{name}_{k}": float(v) for k, v in report[name].items()})
    print(
        "evaluate: "
        + "; ".join(
            f"{name} loss {report[name]['answer_loss']:.3f} F1 {report[name]['token_f1']:.3f}"
            + (
                f" (with sources: loss {report[name]['rag_answer_loss']:.3f} "
                f"F1 {report[name]['rag_token_f1']:.3f})"
                if "rag_answer_loss" in report[name]
                else ""
            )
            for name in ("candidate", "champion", "base")
            if report[name]
        )
    )


def _index_version(params: Params) -> str:
    from ragtune.workspace import open_index

    index = open_index(params)
    try:
        return index.version()
    finally:
        index.close()
