"""The pure judgement of index health: when an index has lost a source, and how failures read."""

from __future__ import annotations

import errno

from ragtune.core.index_health import (
    REBUILD,
    Holding,
    failure_kind,
    failure_message,
    failure_reason,
    lost,
)

WHERE = "/ws/.ragtune/index"


def test_an_index_loses_a_source_only_once_chunks_were_written() -> None:
    assert lost("docs", Holding(), None, WHERE) is None  # never synced: empty, not lost
    assert lost("docs", Holding("a1", written=False), None, WHERE) is None
    gone = lost("docs", Holding(None, written=True), None, WHERE)
    assert gone is not None and "is gone" in gone and "'docs'" in gone and WHERE in gone
    assert gone.endswith(f"`{REBUILD}`")
    replaced = lost("docs", Holding("a1", written=True), "b2", WHERE)
    assert replaced is not None and "not the one" in replaced and replaced.endswith(f"`{REBUILD}`")
    assert lost("docs", Holding("a1", written=True), "a1", WHERE) is None
    assert lost("docs", Holding(None, written=True), "b2", WHERE) is None  # id not yet seen


def test_failures_are_told_apart_by_errno_or_by_their_words() -> None:
    assert failure_kind("anything", errno.ENOSPC) == "disk_full"
    assert failure_kind("LanceError(IO): No space left on device (os error 28)") == "disk_full"
    assert failure_kind("write failed", errno.EACCES) == "no_access"
    assert failure_kind("Permission denied (os error 13)") == "no_access"
    assert failure_kind("lance error: Not found: data/x.lance") == "damaged"
    assert failure_kind("LanceError(IO): file size is too small") == "damaged"


def test_a_failure_reads_as_one_line_without_rust_locations() -> None:
    raw = (
        "lance error: Not found: /ws/index/chunks.lance/data/x.lance, "
        "/root/.cargo/registry/src/lance-io-13.0.0/src/local.rs:273:40\nmore detail"
    )
    assert failure_reason(raw) == "lance error: Not found: /ws/index/chunks.lance/data/x.lance"
    assert failure_reason("") == "unknown error"
    for kind in ("disk_full", "no_access", "damaged"):
        message = failure_message(WHERE, "write", kind, failure_reason(raw))
        assert "\n" not in message and WHERE in message
    assert REBUILD in failure_message(WHERE, "read", "damaged", "x")
    assert "free space" in failure_message(WHERE, "write", "disk_full", "x")
    assert REBUILD not in failure_message(WHERE, "write", "disk_full", "x")
