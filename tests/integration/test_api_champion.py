"""`ragtune api` as users start it: a real process, default params (answers traced to
MLflow), a workspace whose registry holds a champion, /ask over real HTTP.

The champion is a LoRA adapter registered in the workspace's own MLflow store, on a tiny
base model built to answer every question with "[1]" (so a working answer has a citation
whatever the question). The API loads that champion itself: nothing is injected.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragtune.config import Params, load_params
from ragtune.stages import open_tracker
from ragtune.workspace import open_syncs
from tests.support import create_database, create_documents, drop_database, write_params

ROWS = {
    1: ("Database migrations", "Run migrations with the migrate command before deploying."),
    2: ("Caching", "The cache framework stores rendered pages for a configurable time."),
    3: ("Logging", "Configure logging with a dictionary of handlers and loggers."),
}
START_TIMEOUT_S = 180.0  # a cold start imports torch, transformers and MLflow


@dataclass(frozen=True)
class Workspace:
    params: Path
    champion: str  # the registered version holding the alias


def register_champion(params: Params, scratch: Path) -> str:
    """A LoRA adapter on the base, registered and given the `champion` alias, as the
    promote stage leaves it; returns its version."""
    from ragtune.adapters.models import add_lora, load_model, save_adapter
    from ragtune.stages.train import base_folder

    adapter = save_adapter(add_lora(load_model(base_folder(params)), params.train), scratch)
    tracker = open_tracker(params)
    with tracker.run("train") as run_id:
        tracker.log_artifacts(run_id, adapter, "adapter")
        version = tracker.register(run_id, "adapter", {})
    tracker.set_alias("champion", version)
    return version


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, embedder: Any, citing_model: Path
) -> Iterator[Workspace]:
    """A synced workspace with a champion, and default tracking (trace_answers: true)."""
    tmp = tmp_path_factory.mktemp("api-champion")
    db = create_database("sqlite", tmp)
    table = create_documents(db)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with db.engine.begin() as connection:
        connection.execute(
            table.insert(),
            [
                {"id": key, "title": title, "body": body, "deleted": 0, "updated_at": now}
                for key, (title, body) in ROWS.items()
            ],
        )
    base = citing_model
    path = write_params(
        tmp / "ws",
        db.url,
        capture="cursor",
        extra=f'train:\n  base_model: "{base}"\n  device: cpu\nevaluate:\n  max_new_tokens: 8\n',
    )
    params = load_params(path)
    assert params.tracking.trace_answers  # the default this test is about
    for sync in open_syncs(params, embedder=embedder):
        try:
            sync.run()
        finally:
            sync.source.close()
    yield Workspace(path, register_champion(params, tmp / "adapter"))
    drop_database(db)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAGTUNE_API_KEYS", None)
    return env


def wait_until_up(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"ragtune api exited ({server.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"ragtune api did not answer /healthz in {START_TIMEOUT_S}s:\n{log.read_text()}")


def test_api_process_answers_with_its_champion(workspace: Workspace, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragtune",
                "api",
                "--params",
                str(workspace.params),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )
    try:
        wait_until_up(server, url, log)
        response = httpx.post(
            f"{url}/ask", json={"question": "How do I run database migrations?"}, timeout=120
        )
        assert response.status_code == 200, f"{response.text}\n{log.read_text()}"
        body = response.json()
        assert body["model"]["name"] == "ragtune-generator"  # the champion, not the base
        assert body["model"]["version"] == workspace.champion
        assert body["answer"] == "[1]"
        assert body["citations"], body
        assert body["attribution"] == "model"
        first = body["citations"][0]
        assert (first["n"], first["source"]) == (1, "docs")
        assert first["key"] in {str(key) for key in ROWS}
    finally:
        server.send_signal(signal.SIGINT)  # uvicorn's graceful stop: MLflow flushes traces
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    said = log.read_text()
    assert server.returncode == 0, said  # stopped cleanly by Ctrl-C
    assert "no API keys" in said and "serving 127.0.0.1 only" in said, said
    traces = _traces(load_params(workspace.params))
    assert len(traces) == 1, said  # trace_answers: the answer was traced


def _traces(params: Params) -> list[Any]:
    tracker = open_tracker(params)
    return list(tracker.client.search_traces(experiment_ids=[tracker.experiment_id]))


def test_api_refuses_a_public_host_without_keys(workspace: Workspace) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragtune",
            "api",
            "--params",
            str(workspace.params),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert done.returncode != 0
    assert "api.keys_file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
