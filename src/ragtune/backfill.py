"""A backfill's embedding, fanned out: the texts to embed cut into batches that any worker
process can embed, and the worker side, which loads the model once per process.

`MappedEmbedder` is the sync's embedder with `encode` handed to a map function (the
`backfill` flow maps the batches over a Dask cluster); chunking, vector reuse, writing and
advancing stay the plain `SourceSync` steps, so a backfill's index is a plain sync's index.

Why batches are made of groups: sentence-transformers' own `encode` sorts its texts by
length (characters, longest first) and pads each run of `embeddings.batch_size` texts to
the longest one; the padded shape changes the floats slightly (about 1e-7 in fp32, 1e-3
under bf16 autocast). A batch here is a whole number of exactly those runs, each encoded
on its own, so every text meets the same padding as in a single-process sync and the
vectors come out bitwise the same.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.adapters.embeddings import Embedder
from ragtune.config import EmbeddingsConfig


@dataclass(frozen=True)
class EmbedBatch:
    """Texts for one worker task: runs of at most `embeddings.batch_size` texts."""

    number: int
    groups: tuple[tuple[str, ...], ...]

    @property
    def size(self) -> int:
        return sum(len(group) for group in self.groups)


@dataclass(frozen=True)
class EncodedBatch:
    """One batch's vectors (rows in the batch's text order) and who computed them."""

    number: int
    vectors: np.ndarray
    worker: str
    pid: int
    loaded_model: bool  # this call loaded the worker's model (its first batch)


BatchMap = Callable[[Sequence[EmbedBatch]], list[EncodedBatch]]


def encoder_groups(texts: Sequence[str], group_size: int) -> list[list[int]]:
    """Indices of `texts` in the runs sentence-transformers' encode pads together."""
    order = np.argsort([-len(text) for text in texts])
    return [order[i : i + group_size].tolist() for i in range(0, len(order), group_size)]


def split_batches(
    texts: Sequence[str], group_size: int, batch_size: int
) -> tuple[list[EmbedBatch], list[int]]:
    """The texts as batches of whole groups (at most `batch_size` texts, at least one
    group), and the text index of each row of the batches' vectors, concatenated."""
    groups = encoder_groups(texts, group_size)
    per_batch = max(1, batch_size // group_size)
    batches: list[EmbedBatch] = []
    rows: list[int] = []
    for start in range(0, len(groups), per_batch):
        part = groups[start : start + per_batch]
        batches.append(
            EmbedBatch(len(batches), tuple(tuple(texts[i] for i in group) for group in part))
        )
        rows.extend(i for group in part for i in group)
    return batches, rows


class MappedEmbedder(Embedder):
    """The flow process's embedder (tokenizer, limits) whose `encode` is mapped.

    `map_batches` must return one `EncodedBatch` per batch, in any order."""

    def __init__(self, config: EmbeddingsConfig, map_batches: BatchMap, batch_size: int):
        super().__init__(config)
        self.map_batches = map_batches
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return super().encode(texts)
        batches, rows = split_batches(texts, self.config.batch_size, self.batch_size)
        done = {result.number: result for result in self.map_batches(batches)}
        missing = [b.number for b in batches if b.number not in done]
        if missing:
            raise RuntimeError(f"embedding batches {missing} returned no vectors")
        stacked = np.concatenate([done[b.number].vectors for b in batches])
        vectors = np.empty_like(stacked, dtype=np.float32)
        vectors[rows] = stacked
        return vectors


# -- the worker side --------------------------------------------------------------------

_WORKER_EMBEDDERS: dict[str, Embedder] = {}
_LOADING = threading.Lock()


def worker_embedder(config: EmbeddingsConfig) -> tuple[Embedder, bool]:
    """This process's embedder for `config`, loaded on first use; and whether it was now."""
    key = config.model_dump_json()
    with _LOADING:
        embedder = _WORKER_EMBEDDERS.get(key)
        if embedder is not None:
            return embedder, False
        embedder = Embedder(config)
        _ = embedder.model  # load now, once, not inside the first encode
        _WORKER_EMBEDDERS[key] = embedder
        return embedder, True


def encode_batch(
    config: EmbeddingsConfig,
    batch: EmbedBatch,
    torch_threads: int | None = None,
    worker: str = "",
) -> EncodedBatch:
    """Embed one batch in this process, group by group (each group one padded run)."""
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    embedder, loaded = worker_embedder(config)
    vectors = np.concatenate([embedder.encode(list(group)) for group in batch.groups])
    return EncodedBatch(batch.number, vectors, worker, os.getpid(), loaded)
