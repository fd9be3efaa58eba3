"""Sync planning: what is upserted, deleted, or left alone."""

from __future__ import annotations

import datetime as dt

from ragtune.core.documents import Document
from ragtune.core.freshness import lag_summary, percentile
from ragtune.core.fusion import reciprocal_rank_fusion
from ragtune.core.paging import DeletePagingError, page_deletes
from ragtune.core.sync_plan import IndexedDoc, plan_sync, surplus_chunks

FP = "fp"


def doc(key: str, body: str) -> Document:
    return Document("s", key, None, body, changed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def test_unchanged_documents_are_left_alone() -> None:
    same, changed, new = doc("1", "a"), doc("2", "b"), doc("3", "c")
    ledger = {
        "1": IndexedDoc({0: same.content_hash(FP), 1: same.content_hash(FP)}),
        "2": IndexedDoc({0: "old"}),
    }
    plan = plan_sync([same, changed, new], [], ledger, FP)
    assert [d.key for d in plan.upserts] == ["2", "3"]
    assert plan.unchanged == ("1",)
    assert plan.deletes == ()


def test_incomplete_or_mixed_ledger_entries_are_rewritten() -> None:
    d = doc("1", "a")
    gap = {"1": IndexedDoc({0: d.content_hash(FP), 2: d.content_hash(FP)})}
    mixed = {"1": IndexedDoc({0: d.content_hash(FP), 1: "old"})}
    assert plan_sync([d], [], gap, FP).upserts == (d,)
    assert plan_sync([d], [], mixed, FP).upserts == (d,)


def test_only_indexed_absent_keys_are_deleted() -> None:
    plan = plan_sync([], ["1", "9"], {"1": IndexedDoc({0: "h"})}, FP)
    assert plan.deletes == ("1",)
    assert plan_sync([], ["9"], {}, FP).is_empty


def test_surplus_chunks_after_a_document_shrinks() -> None:
    ledger = {"a": IndexedDoc({0: "h", 1: "h", 2: "h"}), "b": IndexedDoc({0: "h"})}
    assert surplus_chunks({"a": 1, "b": 3, "c": 1}, ledger) == {"a": 1}


def test_rrf_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    assert [item for item, _ in fused][:2] == ["a", "c"]
    assert fused[0][1] == 1 / 61 + 1 / 62


def test_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert lag_summary([1.0, 2.0, 3.0]) == {"lag_p50_s": 2.0, "lag_p95_s": 2.9}


def test_delete_paging_until_nothing_matches() -> None:
    store = list(range(25_000))

    def delete_page(_where: object) -> tuple[int, int]:
        batch = min(10_000, len(store))
        del store[:batch]
        return batch, batch

    assert page_deletes(delete_page, "where") == 25_000
    assert store == []


def test_delete_paging_stops_on_failures() -> None:
    def stuck(_where: object) -> tuple[int, int]:
        return 5, 3

    try:
        page_deletes(stuck, "where")
    except DeletePagingError as exc:
        assert "2 of 5" in str(exc)
    else:
        raise AssertionError("expected DeletePagingError")
