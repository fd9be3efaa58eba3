"""Models for the HTTP API tests.

`citing_base` is a tiny base model that answers every question with "[1]", so an answer
that works has a citation whatever the question: a test can ask for citations without
hoping that a random model happens to write one.
"""

from __future__ import annotations

from pathlib import Path


def citing_base(folder: Path) -> Path:
    """A tiny Llama that answers every prompt with "[1]" and stops.

    Its layers add nothing to the residual stream (o_proj and down_proj are zero), so the
    next token depends on the last one only: any token -> "[", "[" -> "1", "1" -> "]",
    "]" -> end of turn. Embeddings and head are untied one-hot tables that say so."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.model.tiny import make_tiny_base

    make_tiny_base(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    opening, one, closing = (tokenizer.convert_tokens_to_ids(t) for t in "[1]")
    vocab, width = model.model.embed_tokens.weight.shape
    embed = torch.zeros(vocab, width)
    head = torch.zeros(vocab, width)
    embed[:, 3] = 1.0  # every other token
    head[opening, 3] = 10.0
    for dim, (token, following) in enumerate(
        [(opening, one), (one, closing), (closing, tokenizer.eos_token_id)]
    ):
        embed[token] = 0.0
        embed[token, dim] = 1.0
        head[following, dim] = 10.0
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    model.config.tie_word_embeddings = False
    model.model.embed_tokens.weight = torch.nn.Parameter(embed)
    model.lm_head.weight = torch.nn.Parameter(head)
    model.save_pretrained(folder)
    return folder
