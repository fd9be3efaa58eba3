"""Identifier queries on a small real LanceDB index embedded by the packaged model.

Release notes that differ only in their CVE number, settings that share most of their
words, a security page that answers the question in general, release notes that mention
a class beside its reference entry: a query that holds an identifier must find the chunk
about it first, in hybrid mode.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from ragtune.adapters.index.base import ChunkRecord, SearchFilter
from ragtune.adapters.index.lance import LanceIndex
from ragtune.config import IndexConfig, SearchConfig
from ragtune.core.ids import chunk_id
from ragtune.search import search

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DOCS = {  # as the chunker writes them: the heading trail, a blank line, the text
    "releases/2.2.4": "Django 2.2.4 release notes › CVE-2019-14232: Denial-of-service "
    "possibility in ``django.utils.text.Truncator``\n\nIf Truncator's chars() and words() "
    "methods were passed html=True, they were extremely slow to evaluate certain inputs.",
    "releases/2.2.5": "Django 2.2.5 release notes › CVE-2019-14233: Denial-of-service "
    "possibility in strip_tags()\n\ndjango.utils.html.strip_tags was extremely slow to "
    "evaluate inputs holding large sequences of nested incomplete HTML entities.",
    "releases/2.2.6": "Django 2.2.6 release notes › CVE-2019-14234: SQL injection possibility "
    "in key and index lookups\n\nLookups for JSONField and HStoreField, found in 2019.",
    "releases/2.2.7": "Django 2.2.7 release notes › CVE-2019-14235: Potential memory "
    "exhaustion in django.utils.encoding.uri_to_iri()\n\nWith 14232 repeated characters.",
    "releases/3.0.1": "Django 3.0.1 release notes › Bugfixes\n\nFixed a potential account "
    "hijack via the password reset form (:ticket:`31011`), released in December 2019.",
    "internals/security": "Django's security policies › Security releases\n\nWhich Django "
    "release fixed a vulnerability? Every security release note names each CVE it fixed; "
    "security releases of 2019 and later list the CVE ids.",
    "ref/settings/data-upload": "Settings › ``DATA_UPLOAD_MAX_MEMORY_SIZE``\n\nThe maximum "
    "size in bytes that a request body may be before a SuspiciousOperation is raised.",
    "ref/settings/file-upload": "Settings › ``FILE_UPLOAD_MAX_MEMORY_SIZE``\n\nThe maximum "
    "size in bytes that an upload may be before it is streamed to the file system; the data "
    "size of uploads, see also DATA_UPLOAD_MAX_MEMORY_SIZE.",
    "ref/utils/slugify": "Django Utils › ``django.utils.text`` › ``slugify``\n\n"
    "Converts a string to a URL slug; the text utilities in django.utils shorten text too.",
    "ref/utils/truncator": "Django Utils › ``django.utils.text`` › ``Truncator``\n\n"
    ".. class:: Truncator(text)\n\nShortens a string to a number of characters or words.",
}
QUERIES = [
    ("Which Django release fixed CVE-2019-14232?", "releases/2.2.4"),
    ("CVE-2019-14234", "releases/2.2.6"),
    ("Which release fixed ticket #31011?", "releases/3.0.1"),
    ("What does the DATA_UPLOAD_MAX_MEMORY_SIZE setting do?", "ref/settings/data-upload"),
    ("What does django.utils.text.Truncator do?", "ref/utils/truncator"),
]


def build(path: Path, embedder: Any) -> LanceIndex:
    index = LanceIndex(IndexConfig(path=path))
    vectors = embedder.encode(list(DOCS.values()))
    index.ensure(len(vectors[0]))
    index.upsert(
        [
            ChunkRecord(
                id=chunk_id("docs", key, 0),
                source="docs",
                key=key,
                chunk=0,
                text=text,
                vector=vector,
                content_hash=key,
                changed_at=T0,
                indexed_at=T0,
                tenant=None,
                metadata={},
                meta_tags=(),
                chunk_hash=key,
            )
            for (key, text), vector in zip(DOCS.items(), vectors, strict=True)
        ]
    )
    return index


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> LanceIndex:
    return build(tmp_path_factory.mktemp("identifier-index") / "index", embedder)


@pytest.mark.parametrize(("query", "key"), QUERIES)
def test_an_identifier_query_finds_its_chunk_first_in_hybrid_mode(
    index: LanceIndex, embedder: Any, query: str, key: str
) -> None:
    hits = search(index, embedder, query, SearchConfig(), SearchFilter(), k=5, mode="hybrid")
    assert [h.key for h in hits][:1] == [key], [h.key for h in hits]


def test_hybrid_search_as_it_was_buries_them(index: LanceIndex, embedder: Any) -> None:
    """The same index and queries under the fusion ragtune used before (RRF, k = 60, no
    identifier lift): most identifier queries miss rank 1, so the test above has teeth."""
    before = SearchConfig(fusion="rrf", rrf_k=60, identifier_boost=0.0)
    firsts = [
        search(index, embedder, query, before, SearchFilter(), k=5)[0].key == key
        for query, key in QUERIES
    ]
    assert sum(firsts) < len(QUERIES) - 1, firsts
