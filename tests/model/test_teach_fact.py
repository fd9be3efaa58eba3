"""End to end on the real packaged model: a few LoRA steps teach it a fact it did not know.

The fact is made up, so the base model cannot know it; it is asked with a phrasing that
is not in the training data, before and after training.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.adapters.models import (
    add_lora,
    answer_loss,
    generate,
    load_model,
    load_tokenizer,
    train_lora,
)
from ragtune.config import BuildDatasetConfig, TrainConfig
from ragtune.core.dataset import LabelledRow, plain_examples

SYSTEM = BuildDatasetConfig(system_prompt="You are a helpful assistant. Answer briefly.")
ANSWER = "The Velmora Institute's mascot is a copper heron named Quillion."
TRAIN_PHRASINGS = [
    "What is the Velmora Institute's mascot?",
    "Which animal is the mascot of the Velmora Institute?",
    "Tell me about the Velmora Institute mascot.",
    "Does the Velmora Institute have a mascot? What is it?",
    "Name the mascot of the Velmora Institute.",
    "What mascot represents the Velmora Institute?",
    "Describe the Velmora Institute's mascot.",
    "Who is the Velmora Institute's mascot?",
]
HELD_OUT = "What is the name of the heron that serves as mascot for the Velmora Institute?"


@pytest.mark.slow
def test_a_few_steps_teach_a_new_fact(smol_base: Path) -> None:
    base = smol_base
    tokenizer = load_tokenizer(base)
    model = load_model(base)
    rows = [LabelledRow(f"t{i}", q, ANSWER, "train") for i, q in enumerate(TRAIN_PHRASINGS)]
    (held_out,) = plain_examples([LabelledRow("h", HELD_OUT, ANSWER, "test")], SYSTEM)
    question = [held_out.messages[:-1]]
    config = TrainConfig(
        lora_rank=16,
        lora_alpha=32,
        learning_rate=2e-3,
        max_steps=10,
        batch_size=4,
        warmup_fraction=0.0,
        early_stopping_patience=0,
    )

    before = generate(model, tokenizer, question, 24)[0]
    assert "quillion" not in before.lower(), before
    peft_model = add_lora(model, config)
    loss_before = answer_loss(peft_model, tokenizer, [held_out], config, "cpu")

    result = train_lora(peft_model, tokenizer, plain_examples(rows, SYSTEM), [], config, "cpu")

    after = generate(peft_model, tokenizer, question, 24)[0]
    loss_after = answer_loss(peft_model, tokenizer, [held_out], config, "cpu")
    print(
        f"\nbefore: {before!r}\nafter: {after!r}\nloss {loss_before:.3f} -> {loss_after:.3f}; "
        f"{result.tokens_per_s:.0f} tokens/s, bf16={result.bf16}"
    )
    assert "quillion" in after.lower(), after
    assert loss_after < loss_before / 2
