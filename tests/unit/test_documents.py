"""Rows to documents: keys, soft deletes, metadata JSON, hashes, ids."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from ragtune.core.documents import (
    RowSpec,
    as_utc,
    document_from_row,
    is_soft_deleted,
    key_text,
    metadata_tags,
    to_json_value,
)
from ragtune.core.ids import chunk_id, content_hash, partition_of

SPEC = RowSpec(key="id", text=("title", "body"), metadata=("section", "year"), deleted="gone")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_key_text_matches_trigger_text() -> None:
    assert key_text(5) == "5"
    assert key_text(Decimal("7")) == "7"
    assert key_text("abc") == "abc"
    value = uuid.uuid4()
    assert key_text(value) == str(value)


def test_soft_delete_marks() -> None:
    for deleted in (True, 1, "1", "yes", "true", dt.datetime(2026, 1, 1)):
        assert is_soft_deleted(deleted), deleted
    for present in (None, False, 0, "0", "", "false", "No", "off"):
        assert not is_soft_deleted(present), present


def test_document_from_row_splits_title_and_body() -> None:
    row = {
        "id": 3,
        "title": "Hello",
        "body": "World\n\nMore",
        "section": "s",
        "year": 2024,
        "gone": 0,
    }
    doc = document_from_row("docs", SPEC, row, NOW)
    assert doc is not None
    assert (doc.key, doc.title, doc.body) == ("3", "Hello", "World\n\nMore")
    assert doc.metadata == {"section": "s", "year": 2024}
    assert doc.text == "Hello\n\nWorld\n\nMore"


def test_soft_deleted_row_is_no_document() -> None:
    row = {"id": 3, "title": "Hello", "body": "x", "section": None, "year": None, "gone": 1}
    assert document_from_row("docs", SPEC, row, NOW) is None


def test_multiline_first_column_is_body_not_title() -> None:
    row = {
        "id": 1,
        "title": "line one\nline two",
        "body": "b",
        "section": None,
        "year": None,
        "gone": None,
    }
    doc = document_from_row("docs", SPEC, row, NOW)
    assert doc is not None and doc.title is None
    assert doc.body == "line one\nline two\n\nb"


def test_metadata_values_become_json() -> None:
    assert to_json_value(Decimal("1.5")) == 1.5
    assert to_json_value(dt.date(2024, 2, 3)) == "2024-02-03"
    assert to_json_value(b"\x00\x01") == "AAE="
    assert to_json_value(float("nan")) == "nan"
    assert metadata_tags({"section": "a", "n": 3, "flag": True, "none": None}) == [
        "flag=true",
        "n=3",
        "section=a",
    ]


def test_as_utc_handles_text_naive_and_aware() -> None:
    assert as_utc("2026-01-01 10:00:00.123") == dt.datetime(2026, 1, 1, 10, 0, 0, 123000, dt.UTC)
    aware = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert as_utc(aware) == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert as_utc(None) is None


def test_content_hash_covers_every_written_field() -> None:
    base = content_hash("fp", "t", "b", {"a": 1}, None)
    assert base == content_hash("fp", "t", "b", {"a": 1}, None)
    assert (
        len(
            {
                base,
                content_hash("fp2", "t", "b", {"a": 1}, None),
                content_hash("fp", "T", "b", {"a": 1}, None),
                content_hash("fp", "t", "B", {"a": 1}, None),
                content_hash("fp", "t", "b", {"a": 2}, None),
                content_hash("fp", "t", "b", {"a": 1}, "tenant"),
            }
        )
        == 6
    )


def test_chunk_ids_are_deterministic_and_distinct() -> None:
    assert chunk_id("docs", "1", 0) == chunk_id("docs", "1", 0)
    ids = {chunk_id(s, k, n) for s in ("a", "b") for k in ("1", "11") for n in (0, 1)}
    assert len(ids) == 8
    assert chunk_id("a", "1", 11) != chunk_id("a", "11", 1)


def test_partitions_cover_every_key_once() -> None:
    keys = [str(i) for i in range(1000)]
    owners = [partition_of(k, 3) for k in keys]
    assert set(owners) == {0, 1, 2}
    assert all(owners.count(p) > 250 for p in range(3))
    assert all(partition_of(k, 1) == 0 for k in keys)


def test_a_null_key_has_a_label_no_real_key_can_have() -> None:
    from ragtune.core.documents import NULL_KEY, key_value_text

    assert key_text(None) == NULL_KEY
    for real in ("None", "NULL", "", NULL_KEY, NULL_KEY[0], NULL_KEY[0] * 2 + "NULL"):
        text = key_text(real)
        assert text != NULL_KEY, real
        assert key_value_text(text) == real  # escaping round-trips
    for number in (0, -1, Decimal("3"), 2.5, b"\x00", uuid.UUID(int=0)):
        assert key_text(number) != NULL_KEY


def test_row_problems_name_a_null_key_and_each_undecodable_column() -> None:
    from ragtune.core.documents import UndecodableText, row_problems

    spec = RowSpec(key="id", text=("title", "body"))
    assert row_problems(spec, {"id": 1, "title": "t", "body": "b"}) == []
    assert "NULL" in row_problems(spec, {"id": None, "title": "t", "body": "b"})[0]
    bad = {"id": 1, "title": UndecodableText(b"ok\xff"), "body": UndecodableText(b"\xc3")}
    problems = row_problems(spec, bad)
    assert len(problems) == 2
    assert "'title'" in problems[0] and "byte 2" in problems[0] and "ff" in problems[0]
    assert "'body'" in problems[1] and "byte 0" in problems[1]
