"""A reader that opens the index while a sync writes its first version sees an empty index,
not damage; a table whose committed version cannot be read is still damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.adapters.index.base import IndexDamagedError
from ragtune.adapters.index.lance import LanceIndex
from ragtune.config import IndexConfig


def index_at(folder: Path) -> LanceIndex:
    return LanceIndex(IndexConfig(backend="lancedb", path=str(folder)))


def test_a_table_whose_first_version_is_being_written_reads_as_empty(tmp_path: Path) -> None:
    # what another process's first write leaves before it commits: the folder, no manifest
    (tmp_path / "chunks.lance" / "_versions").mkdir(parents=True)
    (tmp_path / "chunks.lance" / "data").mkdir()
    assert index_at(tmp_path).table is None


def test_a_committed_version_that_cannot_be_read_is_damage(tmp_path: Path) -> None:
    (tmp_path / "chunks.lance" / "_versions").mkdir(parents=True)
    (tmp_path / "chunks.lance" / "_versions" / "1.manifest").write_bytes(b"cut short")
    with pytest.raises(IndexDamagedError):
        _ = index_at(tmp_path).table
