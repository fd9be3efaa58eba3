"""From a source row to a document: key as text, text parts, metadata, tenant.

The rules that decide what a row means live here, free of any database library:
which value marks a soft delete, how a key becomes text, how metadata values become
JSON, and which time a change is stamped with.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ragtune.core.ids import content_hash

JSONValue = None | bool | int | float | str | list[Any] | dict[str, Any]

FALSE_MARKS = {"", "0", "f", "false", "n", "no", "off"}

# Key texts that start with KEY_MARK are escaped by doubling it, so a label that starts
# with one KEY_MARK and then something else can never be the text of a real key.
KEY_MARK = "\u2400"  # SYMBOL FOR NULL
NULL_KEY = f"{KEY_MARK}NULL"  # the quarantine label of rows whose key is NULL


class UndecodableText(bytes):
    """A stored text value that is not valid UTF-8, kept as its bytes (SQLite)."""


@dataclass(frozen=True)
class RowSpec:
    """Which columns of a source row mean what."""

    key: str
    text: tuple[str, ...]
    metadata: tuple[str, ...] = ()
    deleted: str | None = None
    tenant: str | None = None
    updated_at: str | None = None
    format: str = "auto"


@dataclass(frozen=True)
class Document:
    source: str
    key: str
    title: str | None
    body: str
    metadata: dict[str, JSONValue] = field(default_factory=dict)
    tenant: str | None = None
    changed_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    format: str = "auto"
    raw_metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def text(self) -> str:
        return "\n\n".join(part for part in (self.title, self.body) if part)

    def content_hash(self, fingerprint: str) -> str:
        return content_hash(fingerprint, self.title, self.body, self.metadata, self.tenant)


def key_text(value: Any) -> str:
    """The canonical text of a key value; NULL is NULL_KEY, which no real key can be."""
    if value is None:
        return NULL_KEY
    if isinstance(value, str):
        return KEY_MARK + value if value.startswith(KEY_MARK) else value
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def key_value_text(text: str) -> str:
    """The stored string a key text stands for; ValueError for a label such as NULL_KEY."""
    if text.startswith(KEY_MARK * 2):
        return text[1:]
    if text.startswith(KEY_MARK):
        raise ValueError(f"{text!r} is a label, not a key")
    return text


def row_problems(spec: RowSpec, row: Mapping[str, Any]) -> list[str]:
    """Why a row read from a source cannot become a document (empty when it can)."""
    if row.get(spec.key) is None:
        return [f"key column '{spec.key}' is NULL: the row has no identity to index"]
    problems = []
    for column, value in row.items():
        if column != spec.key and isinstance(value, UndecodableText):
            try:
                bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(
                    f"column '{column}' is not valid UTF-8 (byte {exc.start}: "
                    f"{bytes(value)[exc.start : exc.start + 4].hex()})"
                )
    return problems


def is_soft_deleted(value: Any) -> bool:
    """A soft-delete column marks a row deleted by any value but NULL, false, 0 or ''."""
    if value is None:
        return False
    if isinstance(value, bool | int | float | Decimal):
        return bool(value)
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_MARKS
    return True  # a timestamp such as deleted_at


def to_json_value(value: Any) -> JSONValue:
    """Metadata values as JSON: times as ISO-8601, decimals as numbers, bytes as base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return str(value)


def as_utc(value: Any) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (naive times are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    elif isinstance(value, int | float | Decimal):
        value = dt.datetime.fromtimestamp(float(value), dt.UTC)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"not a time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def document_from_row(
    source: str, spec: RowSpec, row: Mapping[str, Any], changed_at: dt.datetime
) -> Document | None:
    """The document a row stands for, or None when the row is soft-deleted.

    With several text columns, a first column holding one short line is the title that
    heads every chunk; all other text columns are joined by blank lines into the body.
    """
    if spec.deleted and is_soft_deleted(row.get(spec.deleted)):
        return None
    parts = [text_of(row.get(column)).strip() for column in spec.text]
    title: str | None = None
    if len(parts) > 1 and parts[0] and "\n" not in parts[0] and len(parts[0]) <= 300:
        title, parts = parts[0], parts[1:]
    body = "\n\n".join(part for part in parts if part)
    tenant_value = row.get(spec.tenant) if spec.tenant else None
    return Document(
        source=source,
        key=key_text(row[spec.key]),
        title=title,
        body=body,
        metadata={column: to_json_value(row.get(column)) for column in spec.metadata},
        tenant=None if tenant_value is None else key_text(tenant_value),
        changed_at=changed_at,
        format=spec.format,
        raw_metadata={column: row.get(column) for column in spec.metadata},
    )


def metadata_tags(metadata: Mapping[str, JSONValue]) -> list[str]:
    """`name=value` tags for scalar metadata: the form equality filters match on."""
    tags = []
    for name, value in sorted(metadata.items()):
        if isinstance(value, bool):
            tags.append(f"{name}={'true' if value else 'false'}")
        elif isinstance(value, str | int | float):
            tags.append(f"{name}={value}")
    return tags
