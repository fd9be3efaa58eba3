"""`train` stage: LoRA fine-tuning of the base model on the training split.

Writes the adapter (the LoRA weights only; the base is referenced), the training metrics
and the loss curve DVC plots, and logs params, per-step loss and the adapter to MLflow.
`train.init_from: champion` continues from the champion's adapter instead of the base.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ragtune.adapters.models import (
    add_lora,
    load_model,
    load_tokenizer,
    pick_device,
    resolve_base,
    save_adapter,
    train_lora,
)
from ragtune.config import Params
from ragtune.stages import ADAPTER, CANDIDATE, StageContext, write_json
from ragtune.stages.build_dataset import load_examples


def base_folder(params: Params) -> Path:
    return resolve_base(params.train.base_model, params.workspace.path / "models" / "base")


def train(ctx: StageContext) -> None:
    config = ctx.params.train
    base = base_folder(ctx.params)
    device = pick_device(config.device)
    tokenizer = load_tokenizer(base)
    examples, held_out = load_examples("train"), load_examples("validation")
    with tempfile.TemporaryDirectory() as scratch:
        init = _champion_adapter(ctx, Path(scratch)) if config.init_from == "champion" else None
        model = add_lora(load_model(base, device), config, init)
        ctx.log_params(
            {"train": config.model_dump(), "base_path": str(base), "init_adapter": str(init)}
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            "{task.fields[loss]}",
            transient=True,
        ) as bar:
            task = bar.add_task("train: LoRA steps", total=None, loss="")

            def on_step(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, total=total, loss=f"loss {loss:.3f}")
                ctx.log_metrics({"train_loss": loss}, step=step)

            result = train_lora(
                model,
                tokenizer,
                examples,
                held_out,
                config,
                device,
                on_step=on_step,
                on_validation=lambda s, v: ctx.log_metrics({"validation_loss": v}, step=s),
            )
    shutil.rmtree(ADAPTER, ignore_errors=True)
    save_adapter(model, ADAPTER)
    metrics = {
        "steps": result.steps,
        "tokens": result.tokens,
        "seconds": round(result.seconds, 2),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "best_step": result.best_step,
        "best_validation_loss": result.best_validation_loss,
        "stopped_early": result.stopped_early,
        "bf16": result.bf16,
        "device": result.device,
    }
    write_json(CANDIDATE / "train.json", metrics)
    _write_curve(result.train_loss, result.validation_loss)
    write_json(
        CANDIDATE / "run.json",
        {"run_id": ctx.run_id, "base_model": config.base_model, "base_path": str(base)},
    )
    write_json(CANDIDATE / "trained_keys.json", sorted(e.key for e in examples))
    ctx.log_metrics(
        {"tokens_per_s": result.tokens_per_s, "best_validation_loss": result.best_validation_loss}
    )
    if ctx.tracker and ctx.run_id:
        ctx.tracker.log_artifacts(ctx.run_id, ADAPTER, "adapter")
    print(
        f"train: {result.steps} steps, {result.tokens} tokens in {result.seconds:.1f}s "
        f"({result.tokens_per_s:.0f} tokens/s, {'bf16' if result.bf16 else 'fp32'} on "
        f"{device}); best validation loss {result.best_validation_loss:.4f} at step "
        f"{result.best_step}{' (stopped early)' if result.stopped_early else ''}"
    )


def _champion_adapter(ctx: StageContext, scratch: Path) -> Path | None:
    champion = ctx.tracker.champion() if ctx.tracker else None
    if champion is None:
        print("train: no champion yet; starting from the base model")
        return None
    return Path(ctx.tracker.download(champion["version"], scratch))


def _write_curve(train: list[tuple[int, float]], validation: list[tuple[int, float]]) -> None:
    checked = dict(validation)
    with (CANDIDATE / "loss.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["step", "train_loss", "validation_loss"])
        for step, loss in train:
            held = checked.get(step)
            writer.writerow([step, f"{loss:.5f}", "" if held is None else f"{held:.5f}"])
