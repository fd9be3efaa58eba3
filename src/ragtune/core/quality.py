"""What the quality gate checks, free of GX: the frames it validates and the verdicts.

A change batch becomes one row per document about to be written (key, stripped text,
the observed type of every metadata value) plus a one-row batch summary (row count,
fraction of the source's indexed documents the pass would delete). The GX suites in
`adapters/quality.py` validate these frames; this module turns their failures into
per-key reasons and batch-level refusals.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

CONTROL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # C0 controls but tab, newline, return
REPLACEMENT_CHAR = "\ufffd"  # what undecodable bytes became
TYPE_PREFIX = "type_of:"

ALLOWED_TYPES: dict[str, frozenset[str]] = {
    "int": frozenset({"int"}),
    "float": frozenset({"float", "int", "decimal"}),
    "decimal": frozenset({"decimal", "int", "float"}),
    "str": frozenset({"str"}),
    "bool": frozenset({"bool", "int"}),
    "datetime": frozenset({"datetime"}),
    "date": frozenset({"date", "datetime"}),
    "time": frozenset({"time"}),
    "bytes": frozenset({"bytes"}),
    "uuid": frozenset({"uuid"}),
    "json": frozenset({"json"}),
}


def declared_type(python_type: type | None) -> str | None:
    """The gate's name for a column's Python type; None leaves the column unchecked."""
    names: dict[type, str] = {
        bool: "bool",
        int: "int",
        float: "float",
        Decimal: "decimal",
        str: "str",
        dt.datetime: "datetime",
        dt.date: "date",
        dt.time: "time",
        bytes: "bytes",
        uuid.UUID: "uuid",
        dict: "json",
        list: "json",
    }
    return names.get(python_type) if python_type is not None else None


def observed_type(value: Any, declared: str | None = None) -> str | None:
    """The type name of a raw value; text that parses as the declared type counts as it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, dict | list):
        return "json"
    if isinstance(value, str):
        return _text_as(value, declared)
    return type(value).__name__


def _text_as(text: str, declared: str | None) -> str:
    """Databases with loose typing (SQLite) hand times, numbers and JSON back as text."""
    parsers: dict[str, Any] = {
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
        "json": json.loads,
        "uuid": uuid.UUID,
        "decimal": Decimal,
    }
    parse = parsers.get(declared or "")
    if parse is None:
        return "str"
    try:
        parse(text.strip())
    except (ValueError, ArithmeticError, TypeError):
        return "str"
    return declared or "str"


@dataclass(frozen=True)
class Finding:
    """One failed expectation: what it checks, for humans, and the failing row keys."""

    expectation: str
    column: str | None
    reason: str
    keys: tuple[str, ...] = ()
    observed: Any = None
    bound: Any = None


@dataclass
class GateReport:
    """The outcome of one validation: row-level reasons by key, batch-level refusals."""

    success: bool
    rows: dict[str, list[str]] = field(default_factory=dict)
    batch: list[Finding] = field(default_factory=list)
    result_path: str | None = None

    def describe_batch(self) -> str:
        return "; ".join(
            f"{f.expectation}({f.column}) failed: observed {f.observed} {f.bound} [{f.reason}]"
            for f in self.batch
        )


def row_reason(expectation: str, column: str | None, limits: Mapping[str, Any]) -> str:
    """A short, human reason for a row-level expectation failure."""
    if column == "key":
        return "duplicate key" if "unique" in expectation else "key is missing"
    if column == "text":
        if "lengths" in expectation:
            return (
                f"text is empty or longer than {limits.get('max_text_chars')} characters"
                if limits.get("max_text_chars")
                else "text is empty"
            )
        if "not_match_regex" in expectation and limits.get("regex") == REPLACEMENT_CHAR:
            return "text holds undecodable bytes (binary data)"
        return "text holds NUL or other control characters"
    if column and column.startswith(TYPE_PREFIX):
        name = column.removeprefix(TYPE_PREFIX)
        return f"metadata '{name}' is not of its declared type {limits.get('declared', '')}".strip()
    if column in ("question", "answer"):
        return f"{column} is missing, too short or too long"
    return f"{expectation} failed on {column}"


def change_rows(
    documents: Iterable[tuple[str, str, Mapping[str, Any]]],
    declared: Mapping[str, str | None],
) -> list[dict[str, Any]]:
    """Rows to validate: (key, text, raw metadata) per document about to be written."""
    rows = []
    for key, text, metadata in documents:
        row: dict[str, Any] = {"key": key, "text": text.strip()}
        for column, kind in declared.items():
            if kind is not None:
                row[f"{TYPE_PREFIX}{column}"] = observed_type(metadata.get(column), kind)
        rows.append(row)
    return rows


def batch_summary(rows: int, deletes: int, deleted_before: int, indexed: int) -> dict[str, Any]:
    """The one-row frame batch-level expectations read."""
    fraction = (deleted_before + deletes) / indexed if indexed else 0.0
    return {
        "rows": rows,
        "deletes": deletes,
        "indexed_documents": indexed,
        "delete_fraction": round(fraction, 6),
    }


def training_rows(
    keys: Sequence[str],
    questions: Sequence[str | None],
    answers: Sequence[str | None],
    splits: Sequence[str],
    evaluation_splits: Iterable[str] = ("validation", "test"),
) -> list[dict[str, Any]]:
    """Rows of a training snapshot, with `leaks_evaluation` marking a training question
    that also appears (case- and space-insensitively) in an evaluation split."""

    def norm(q: str | None) -> str:
        return " ".join((q or "").lower().split())

    held_out = set(evaluation_splits)
    evaluation = {norm(q) for q, s in zip(questions, splits, strict=True) if s in held_out}
    return [
        {
            "key": k,
            "question": (q or "").strip() or None,
            "answer": (a or "").strip() or None,
            "split": s,
            "question_norm": norm(q),
            "leaks_evaluation": s not in held_out and norm(q) in evaluation,
        }
        for k, q, a, s in zip(keys, questions, answers, splits, strict=True)
    ]
