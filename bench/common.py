"""Shared pieces of the benchmarks: a Django docs workspace, timers, percentiles."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
    "LANCEDB_LOG": "error",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_name, _value)

from ragtune.adapters.changelog import Changelog  # noqa: E402
from ragtune.adapters.sources import SqlSource  # noqa: E402
from ragtune.config import Params, load_params  # noqa: E402
from ragtune.core.corpus import DocRow  # noqa: E402
from ragtune.core.freshness import percentile  # noqa: E402
from ragtune.demo import find_sdist, read_docs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SDIST_DIR = ROOT / "data" / "demo" / "sdist"


def django_docs(limit: int | None = None, seed: int = 0) -> list[DocRow]:
    rows = read_docs(find_sdist(SDIST_DIR))
    if limit is not None and limit < len(rows):
        rows = sorted(random.Random(seed).sample(rows, limit), key=lambda r: r.id)
    return rows


def workspace_params(
    folder: Path, url: str, poll_interval_s: float = 1.0, batch_size: int = 256, gate: bool = True
) -> Params:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(
        f"""
sources:
  docs:
    url: "{url}"
    table: documents
    key: id
    text: [title, body]
    metadata: [url, section]
    capture: changelog
sync:
  batch_size: {batch_size}
  poll_interval_s: {poll_interval_s}
quality:
  enabled: {str(gate).lower()}
"""
    )
    return load_params(path)


def install_changelog(params: Params) -> None:
    source = SqlSource.open("docs", params.sources["docs"])
    Changelog(source, params.workspace.path).install()
    source.close()


@contextmanager
def timed(into: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into[name] = time.perf_counter() - start


def p50_p95(values: list[float]) -> dict[str, float | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {"p50": r(percentile(values, 50)), "p95": r(percentile(values, 95)), "n": len(values)}


def repeat(fn: Callable[[], Any], times: int) -> list[float]:
    out = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out
