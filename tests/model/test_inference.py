"""Inference: batched greedy generation answers as one-by-one generation does, in the order
asked; inference weights are held in bf16 after merging the adapter in float32 (on CPU,
prepacked for oneDNN, computing exactly what plain bf16 weights do), and a bf16-held model
generates without autocast; training loads stay float32.

Why the merged champion was slower than the base model (2.45 s vs 1.59 s for 30 tokens):
both held float32 weights under bf16 autocast, and autocast caches its bf16 copy of a
weight only for leaf tensors that require grad. The base model's weights do; peft freezes
the base weights it merges into, so the champion's were converted again at every matmul
of every token. Held in bf16, neither model converts anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ragtune.adapters.models import (
    add_lora,
    generate,
    generate_timed,
    load_model,
    load_tokenizer,
    save_adapter,
)
from ragtune.answer import Generator
from ragtune.config import TrainConfig

SEED = 1
QUESTIONS = [
    "What is a model?",
    "How do I define URL patterns with path converters in a project that has many apps?",
    "Why?",
    "How do I send email from Django, with attachments and an HTML alternative body?",
    "What does the sessions framework store?",
]
LORA = TrainConfig(lora_rank=4, lora_alpha=8, precision="fp32")


def chats(questions: list[str]) -> list[list[dict[str, str]]]:
    system = {"role": "system", "content": "Answer briefly."}
    return [[system, {"role": "user", "content": q}] for q in questions]


@pytest.fixture(scope="module")
def spread_base(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with wide random weights: its greedy answers differ per prompt (the
    default init answers every prompt with the same repeated token)."""
    print(f"seed {SEED}")
    model = load_model(tiny_base)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    folder = tmp_path_factory.mktemp("spread-base")
    model.save_pretrained(folder)
    load_tokenizer(tiny_base).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def adapter(spread_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter whose B matrices are non-zero, so merging it changes the weights."""
    model = add_lora(load_model(spread_base), LORA)
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return save_adapter(model, tmp_path_factory.mktemp("adapter") / "adapter")


def test_batched_answers_match_one_by_one_in_order(spread_base: Path) -> None:
    model, tokenizer = load_model(spread_base), load_tokenizer(spread_base)
    asked = chats(QUESTIONS)
    one_by_one = [generate_timed(model, tokenizer, [c], 6, 1) for c in asked]
    batched = generate_timed(model, tokenizer, asked, 6, 3)  # lengths sorted across batches

    assert batched.texts == [g.texts[0] for g in one_by_one]
    assert len(set(batched.texts)) == len(QUESTIONS)  # distinct answers: a reordering shows
    assert batched.new_tokens == [g.new_tokens[0] for g in one_by_one]
    assert batched.prompt_tokens == [g.prompt_tokens[0] for g in one_by_one]
    assert batched.decode_steps <= 2 * 5  # two batches, at most 5 steps after the first token
    assert generate(model, tokenizer, asked, 6, 2) == batched.texts


def test_generator_batches_in_the_order_asked(spread_base: Path) -> None:
    model, tokenizer = load_model(spread_base), load_tokenizer(spread_base)
    generator = Generator("tiny", None, model, tokenizer, "cpu", False, batch_size=4)
    asked = chats(QUESTIONS)
    alone = [generator.generate([c], 5, batch_size=1)[0] for c in asked]
    assert generator.generate(asked, 5) == alone
    assert generator.generate(list(reversed(asked)), 5, batch_size=2) == alone[::-1]


def weights(model: Any) -> dict[str, torch.Tensor]:
    """Every weight by name, a prepacked linear's unpacked to its plain layout."""
    found = dict(model.state_dict())
    for name, module in model.named_modules():
        if hasattr(module, "packed"):
            found[f"{name}.weight"] = module.packed.to_dense()
    return found


def test_bf16_inference_merges_in_float32_then_holds_bf16(spread_base: Path, adapter: Path) -> None:
    merged = load_model(spread_base, adapter=adapter)  # float32: what training and loss use
    held = load_model(spread_base, adapter=adapter, bf16=True)
    base = load_model(spread_base)

    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    assert {p.dtype for p in held.parameters()} == {torch.bfloat16}
    assert all(p.is_contiguous() for p in held.parameters())
    linears = [m for m in merged.modules() if isinstance(m, torch.nn.Linear)]
    packed = [m for m in held.modules() if hasattr(m, "packed")]
    assert linears and len(packed) == len(linears)  # every projection, lm_head included
    assert not any(isinstance(m, torch.nn.Linear) for m in held.modules())
    assert all(m.packed.dtype == torch.bfloat16 for m in packed)
    held_weights, merged_weights = weights(held), merged.state_dict()
    assert held_weights.keys() == merged_weights.keys()
    base_weights = base.state_dict()
    changed = [n for n in merged_weights if not torch.equal(merged_weights[n], base_weights[n])]
    assert changed and all("proj" in n for n in changed)  # the adapter was merged
    for name, weight in merged_weights.items():  # one rounding, of the float32 merge
        assert torch.equal(held_weights[name], weight.to(torch.bfloat16)), name


def test_packed_weights_compute_what_plain_bf16_weights_do(spread_base: Path) -> None:
    packed = load_model(spread_base, bf16=True)
    plain = load_model(spread_base).to(torch.bfloat16)
    ids = torch.randint(0, 1000, (2, 12), generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        assert torch.equal(packed(input_ids=ids).logits, plain(input_ids=ids).logits)
    tokenizer = load_tokenizer(spread_base)
    asked = chats(QUESTIONS[:3])
    assert generate(packed, tokenizer, asked, 5, 2) == generate(plain, tokenizer, asked, 5, 2)


def autocast_seen(model: Any) -> list[bool]:
    seen: list[bool] = []
    model.model.layers[0].register_forward_pre_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cpu"))
    )
    return seen


def test_bf16_held_model_generates_without_autocast(spread_base: Path, adapter: Path) -> None:
    tokenizer = load_tokenizer(spread_base)
    held = load_model(spread_base, adapter=adapter, bf16=True)
    seen = autocast_seen(held)
    result = generate_timed(held, tokenizer, chats(QUESTIONS[:2]), 4, 2, "cpu", bf16=True)
    assert seen and not any(seen)  # bf16 weights: nothing to convert, per token or at all
    assert all(1 <= n <= 4 for n in result.new_tokens)

    float32 = load_model(spread_base, adapter=adapter)  # the training-precision path
    seen = autocast_seen(float32)
    generate_timed(float32, tokenizer, chats(QUESTIONS[:1]), 2, 1, "cpu", bf16=True)
    assert seen and all(seen)


def test_the_starting_adapter_depends_on_train_seed_only(tiny_base: Path) -> None:
    """Whatever drew random numbers before, `add_lora` starts from `train.seed`."""

    def initial_lora(draws_before: int, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(1234)
        torch.rand(draws_before)  # earlier work in the same process
        model = add_lora(load_model(tiny_base), LORA.model_copy(update={"seed": seed}))
        return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}

    first, later = initial_lora(0, 7), initial_lora(1000, 7)
    assert first, "the tiny model has LoRA matrices"
    assert all(torch.equal(first[n], later[n]) for n in first)
    other = initial_lora(0, 8)
    assert not all(torch.equal(first[n], other[n]) for n in first)
