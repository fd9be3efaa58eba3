"""Builds the components a command needs from params: index, embedder, state, syncs.

Nothing is opened at import time; each command asks for what it uses, and sources are
validated before anything is written to the workspace.
"""

from __future__ import annotations

from ragtune.adapters.embeddings import Embedder
from ragtune.adapters.index.base import VectorIndex
from ragtune.adapters.quality import QualityGate
from ragtune.adapters.sources import SqlSource
from ragtune.adapters.state import StateStore
from ragtune.config import Params
from ragtune.sync import Partition, ProgressHook, SourceSync


def open_index(params: Params) -> VectorIndex:
    if params.index.backend == "weaviate":
        from ragtune.adapters.index.weaviate import WeaviateIndex

        return WeaviateIndex(params.index)
    from ragtune.adapters.index.lance import LanceIndex

    return LanceIndex(params.index)


def open_embedder(params: Params) -> Embedder:
    return Embedder(params.embeddings)


def open_state(params: Params) -> StateStore:
    return StateStore(params.workspace.path)


def open_sources(params: Params, name: str | None) -> dict[str, SqlSource]:
    """Connect to and validate every selected source before anything is written."""
    opened: dict[str, SqlSource] = {}
    try:
        for source_name, config in params.selected_sources(name).items():
            opened[source_name] = SqlSource.open(source_name, config)
    except BaseException:
        for source in opened.values():
            source.close()
        raise
    return opened


def open_syncs(
    params: Params,
    name: str | None = None,
    partition: Partition = Partition(),
    progress: ProgressHook | None = None,
    index: VectorIndex | None = None,
    embedder: Embedder | None = None,
) -> list[SourceSync]:
    sources = open_sources(params, name)
    embedder = embedder or open_embedder(params)
    index = index or open_index(params)
    state = open_state(params)
    gate = open_gate(params)
    return [
        SourceSync(n, params, source, index, embedder, state, partition, progress, gate)
        for n, source in sources.items()
    ]


def open_gate(params: Params) -> QualityGate | None:
    """The workspace's GX suites (built lazily, on the first validation), or None if off."""
    if not params.quality.enabled:
        return None
    return QualityGate(params.workspace.path, params.quality)
