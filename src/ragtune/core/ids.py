"""Deterministic identities: chunk ids, content hashes, key partitions.

A chunk id depends only on (source, key, chunk number), so re-writing a document
overwrites its chunks in place; a content hash covers everything written for a document
plus the fingerprint of the chunker and embedding model, so a change to any of them is
seen as a change of content.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

CHUNK_NAMESPACE = uuid.UUID("6f1d0d6e-93a4-5b8e-8c2f-2a7e3b9d4c10")


def chunk_id(source: str, key: str, chunk: int) -> str:
    """uuid5 of (source, key, chunk number), as text."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{source}\x1f{key}\x1f{chunk}"))


def content_hash(
    fingerprint: str,
    title: str | None,
    body: str,
    metadata: Mapping[str, Any],
    tenant: str | None,
) -> str:
    """sha256 over a canonical JSON of what the index stores for one document."""
    canonical = json.dumps(
        [fingerprint, title, body, dict(sorted(metadata.items())), tenant],
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def chunk_hash(fingerprint: str, text: str) -> str:
    """Hash of one chunk's text under a model and chunker: equal hashes, equal vectors."""
    return hashlib.sha256(f"{fingerprint}\x1f{text}".encode()).hexdigest()[:32]


def partition_of(key: str, count: int) -> int:
    """Stable partition of a key among `count` parallel consumers."""
    if count <= 1:
        return 0
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
