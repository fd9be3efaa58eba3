"""Retrieval over the index: vector, full-text, or hybrid (both retrievers, fused).

Hybrid search runs both retrievers under the same filters to `candidates` depth and
fuses them the same way for every backend. By default that is reciprocal-rank fusion with
k = 1 (`search.fusion: rrf`, `search.rrf_k`): the first of either list stays in the fused
top 5 whatever the other list says, so a chunk that only the words find (an error code, a
CVE id) is not buried under chunks both lists rank tenth; `convex` (min-max normalised
scores, `search.text_weight`) is the alternative. Then identifiers in the query (CVE ids,
ticket numbers, dotted paths, setting names) lift the chunks about them (their heading
names one) and, half as much, the chunks that hold them verbatim, by
`search.identifier_boost`: the full-text index splits `CVE-2019-14232` into three words,
so exactness is checked here, on the candidates' text. Every answer carries `as_of`: the
time up to which all searched sources are known to be in the index.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ragtune.adapters.embeddings import Embedder
from ragtune.adapters.index.base import SearchFilter, SearchHit, VectorIndex
from ragtune.adapters.state import StateStore
from ragtune.config import SearchConfig
from ragtune.core.fusion import boost_identifiers, convex_fusion, reciprocal_rank_fusion
from ragtune.errors import ConfigError


@dataclass(frozen=True)
class SearchResult:
    query: str
    as_of: dt.datetime | None
    hits: list[SearchHit]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "results": [
                {
                    "source": h.source,
                    "key": h.key,
                    "chunk": h.chunk,
                    "score": round(h.score, 6),
                    "text": h.text,
                    "metadata": dict(h.metadata),
                }
                for h in self.hits
            ],
        }


def parse_where(pairs: Sequence[str]) -> tuple[str, ...]:
    """`name=value` metadata filters, checked for shape."""
    for pair in pairs:
        name, sep, _ = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--where {pair!r}: write NAME=VALUE, e.g. --where section=howto")
    return tuple(pairs)


def as_of(state: StateStore, sources: Sequence[str]) -> dt.datetime | None:
    """The oldest 'known current up to' time among the sources (None if one never synced)."""
    stamps = [state.load(name).as_of for name in sources]
    if not stamps or any(s is None for s in stamps):
        return None
    return dt.datetime.fromtimestamp(min(s for s in stamps if s is not None), dt.UTC)


def search(
    index: VectorIndex,
    embedder: Embedder,
    query: str,
    config: SearchConfig,
    where: SearchFilter,
    k: int | None = None,
    mode: str | None = None,
) -> list[SearchHit]:
    k = k or config.k
    mode = mode or config.mode
    if not query.strip():
        return []
    if mode == "text":
        return index.text_search(query, k, where)
    vector = embedder.encode([query])[0]
    if mode == "vector":
        return index.vector_search(vector, k, where)
    depth = max(config.candidates, k)
    by_vector = index.vector_search(vector, depth, where)
    by_text = index.text_search(query, depth, where)
    return fuse(query, by_vector, by_text, config)[:k]


def fuse(
    query: str, by_vector: Sequence[SearchHit], by_text: Sequence[SearchHit], config: SearchConfig
) -> list[SearchHit]:
    """One ranking of both retrievers' hits (each best first), scored by the fusion."""
    hits = {h.id: h for h in by_text} | {h.id: h for h in by_vector}
    if config.fusion == "rrf":
        fused = reciprocal_rank_fusion(
            [[h.id for h in by_vector], [h.id for h in by_text]], k=config.rrf_k
        )
    else:
        fused = convex_fusion(
            [(h.id, h.score) for h in by_vector],
            [(h.id, h.score) for h in by_text],
            text_weight=config.text_weight,
        )
    texts = {item: hit.text for item, hit in hits.items()}
    fused = boost_identifiers(fused, texts, query, config.identifier_boost)
    return [replace(hits[item], score=score) for item, score in fused]
