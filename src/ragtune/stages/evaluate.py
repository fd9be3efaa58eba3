"""`evaluate` stage: candidate vs champion vs base on the frozen test split.

For each model: `answer_loss` (mean negative log-likelihood per answer token, on every
test example) and, on the first `evaluate.max_questions` test questions answered by
greedy generation, `token_f1` and `contains` against the labelled answer. The promotion
decision reads these numbers.
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
from ragtune.core.dataset import Example, answer_of
from ragtune.core.metrics import contains, mean, token_f1
from ragtune.errors import RagtuneError
from ragtune.stages import ADAPTER, EVALUATION, StageContext, write_json
from ragtune.stages.build_dataset import load_examples
from ragtune.stages.train import base_folder


def score(
    params: Params, base: Path, adapter: Path | None, tokenizer: Any, tests: list[Example]
) -> dict[str, float]:
    config, device = params.evaluate, pick_device(params.train.device)
    model = load_model(base, device, adapter)
    started = time.perf_counter()
    loss = answer_loss(model, tokenizer, tests, params.train, device)
    asked = tests[: config.max_questions]
    answers = generate(
        model,
        tokenizer,
        [e.messages[:-1] for e in asked],
        config.max_new_tokens,
        config.batch_size,
        device,
        use_bf16(params.train.precision, device),
    )
    expected = [answer_of(e) for e in asked]
    return {
        "answer_loss": round(loss, 5),
        "token_f1": round(
            mean([token_f1(a, b) for a, b in zip(answers, expected, strict=True)]), 5
        ),
        "contains": round(
            mean([contains(a, b) for a, b in zip(answers, expected, strict=True)]), 5
        ),
        "seconds": round(time.perf_counter() - started, 2),
    }


def evaluate(ctx: StageContext) -> None:
    tests = load_examples("test")
    if not tests:
        raise RagtuneError(
            "the test split is empty; add labelled rows or raise snapshot.test_fraction"
        )
    base = base_folder(ctx.params)
    tokenizer = load_tokenizer(base)
    report: dict[str, Any] = {"questions": len(tests), "champion_version": None}
    report["candidate"] = score(ctx.params, base, ADAPTER, tokenizer, tests)
    report["base"] = score(ctx.params, base, None, tokenizer, tests)
    champion = ctx.tracker.champion() if ctx.tracker else None
    report["champion"] = None
    if champion is not None:
        with tempfile.TemporaryDirectory() as scratch:
            adapter = Path(ctx.tracker.download(champion["version"], Path(scratch)))
            report["champion"] = score(ctx.params, base, adapter, tokenizer, tests)
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
            for name in ("candidate", "champion", "base")
            if report[name]
        )
    )
