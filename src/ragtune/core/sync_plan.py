"""What a sync batch must do, decided from the re-read rows and the index's own ledger.

Change capture only names keys; the rows re-read from their table are the truth. A key
whose row is present gets its current content; a key whose row is gone (or soft-deleted)
is deleted. A document whose content hash already sits in the index, on a complete run
of chunks 0..n-1, is left alone: it is neither re-embedded nor re-written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ragtune.core.documents import Document


@dataclass(frozen=True)
class IndexedDoc:
    """What the index holds for one key, by chunk number: the document's content hash as
    each chunk recorded it, and the hash of each chunk's own text (for vector reuse)."""

    hashes: Mapping[int, str]
    chunk_hashes: Mapping[int, str] = field(default_factory=dict)
    tenants: frozenset[str | None] | None = None  # the access scope its chunks carry, if read

    @property
    def chunks(self) -> int:
        return len(self.hashes)

    def is_complete(self, content_hash: str) -> bool:
        return set(self.hashes) == set(range(len(self.hashes))) and all(
            h == content_hash for h in self.hashes.values()
        )


@dataclass(frozen=True)
class SyncPlan:
    upserts: tuple[Document, ...] = ()
    deletes: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    hashes: Mapping[str, str] = field(default_factory=dict)
    ledger: Mapping[str, IndexedDoc] = field(default_factory=dict)
    quarantined: tuple[str, ...] = ()
    held_deletes: tuple[str, ...] = ()  # deletes waiting behind the mass-delete guard

    @property
    def is_empty(self) -> bool:
        return not self.upserts and not self.deletes


def plan_sync(
    present: Sequence[Document],
    absent: Iterable[str],
    ledger: Mapping[str, IndexedDoc],
    fingerprint: str,
) -> SyncPlan:
    """Upsert what changed, delete what vanished, leave the rest."""
    upserts: list[Document] = []
    unchanged: list[str] = []
    hashes: dict[str, str] = {}
    for document in present:
        digest = document.content_hash(fingerprint)
        hashes[document.key] = digest
        held = ledger.get(document.key)
        if held is not None and held.is_complete(digest):
            unchanged.append(document.key)
        else:
            upserts.append(document)
    deletes = sorted({key for key in absent if key in ledger})
    return SyncPlan(tuple(upserts), tuple(deletes), tuple(unchanged), hashes, dict(ledger))


def surplus_chunks(
    plan_chunks: Mapping[str, int], ledger: Mapping[str, IndexedDoc]
) -> dict[str, int]:
    """Per re-written key, the first chunk number that must go (old chunks beyond the new end)."""
    return {
        key: count
        for key, count in plan_chunks.items()
        if key in ledger and max(ledger[key].hashes, default=-1) >= count
    }
