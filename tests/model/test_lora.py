"""LoRA smoke test on a tiny `from_config` causal LM."""

from __future__ import annotations

from pathlib import Path

import torch

from ragtune.adapters.models import (
    add_lora,
    answer_loss,
    encode,
    generate,
    load_model,
    load_tokenizer,
    save_adapter,
    train_lora,
)
from ragtune.config import BuildDatasetConfig, TrainConfig
from ragtune.core.dataset import LabelledRow, plain_examples

ROWS = [
    LabelledRow(
        f"k{i}", f"What is the code name of project {i}?", f"Project {i} is Bluebird.", "train"
    )
    for i in range(24)
]
CONFIG = TrainConfig(
    lora_rank=4,
    lora_alpha=8,
    learning_rate=5e-3,
    max_steps=12,
    batch_size=4,
    eval_every=4,
    early_stopping_patience=0,
    precision="fp32",
)


def test_lora_moves_adapter_weights_only_and_reloads(tiny_base: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(tiny_base)
    examples = plain_examples(ROWS, BuildDatasetConfig(system_prompt="Answer briefly."))
    model = add_lora(load_model(tiny_base), CONFIG)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss_before = answer_loss(model, tokenizer, examples[:8], CONFIG, "cpu")

    result = train_lora(model, tokenizer, examples[:20], examples[20:], CONFIG, "cpu")

    assert result.steps == 12 and result.tokens > 0
    assert len(result.validation_loss) == 3
    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    frozen = [n for n in before if "lora_" not in n]
    assert lora and frozen
    assert any(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert answer_loss(model, tokenizer, examples[:8], CONFIG, "cpu") < loss_before

    folder = save_adapter(model, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file()
    assert not any(p.name.startswith("model") for p in folder.iterdir())  # the base is not copied
    reloaded = load_model(tiny_base, adapter=folder)
    ids = torch.tensor([encode(tokenizer, examples[0], 64).input_ids])
    with torch.no_grad():
        assert torch.allclose(
            model(input_ids=ids).logits, reloaded(input_ids=ids).logits, atol=1e-5
        )
    chats = [e.messages[:-1] for e in examples[:2]]
    assert generate(model, tokenizer, chats, 5) == generate(reloaded, tokenizer, chats, 5)


def test_answer_tokens_only_carry_the_loss(tiny_base: Path) -> None:
    tokenizer = load_tokenizer(tiny_base)
    (example,) = plain_examples(ROWS[:1], BuildDatasetConfig(system_prompt="Answer briefly."))
    encoded = encode(tokenizer, example, 512)
    answer = [
        t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != -100
    ]
    text = tokenizer.decode(answer)
    assert text.startswith("Project 0 is Bluebird.") and encoded.labels[0] == -100
