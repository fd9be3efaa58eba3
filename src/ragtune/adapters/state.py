"""Workspace state: capture positions and sync run history, in `<workspace>/state.db`.

The index is its own ledger of what was indexed; this file only holds where each source's
capture stands (cursor watermark, whether a full pass is owed, when keys were last
reconciled, up to when the index is known current) and a log of sync runs for `status`.
A position is saved only after the index write it covers is durable, so losing this file
costs a re-scan, never a change. It also remembers, per source, whether chunks were ever
written and into which index (its id), so an index that lost them is noticed
(`index_health`).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.index_health import Holding

SCHEMA = """
CREATE TABLE IF NOT EXISTS source_state (
    source TEXT PRIMARY KEY,
    watermark TEXT,
    needs_full INTEGER NOT NULL DEFAULT 1,
    reconciled_at REAL,
    as_of REAL
);
CREATE TABLE IF NOT EXISTS quarantine (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    reasons TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE TABLE IF NOT EXISTS index_holdings (
    source TEXT PRIMARY KEY,
    index_id TEXT,
    written INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS applied_deletes (
    source TEXT NOT NULL,
    at REAL NOT NULL,
    count INTEGER NOT NULL,
    allowed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS trained_keys (
    version TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (version, key)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
"""


@dataclass
class SourceState:
    source: str
    watermark: Any = None
    needs_full: bool = True
    reconciled_at: float | None = None
    as_of: float | None = None


@dataclass
class RunCounts:
    """What one sync run did; `embedded` and `written` stay 0 when nothing changed."""

    batches: int = 0
    changes: int = 0
    upserted_docs: int = 0
    deleted_docs: int = 0
    unchanged_docs: int = 0
    embedded_chunks: int = 0
    reused_chunks: int = 0
    written_chunks: int = 0
    index_writes: int = 0
    acked: int = 0
    ack_deferred: int = 0
    held_deletes: int = 0  # deletes the mass-delete guard held back
    lags_s: list[float] = field(default_factory=list)

    def add(self, other: RunCounts) -> None:
        for name, value in asdict(other).items():
            if name == "lags_s":
                self.lags_s.extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "lags_s"}


def encode_position(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return json.dumps({"datetime": value.isoformat()})
    if isinstance(value, dt.date):
        return json.dumps({"date": value.isoformat()})
    if isinstance(value, str):
        return json.dumps({"text": value})
    return json.dumps({"number": str(value)})


def decode_position(text: str | None) -> Any:
    if text is None:
        return None
    data = json.loads(text)
    if "datetime" in data:
        return dt.datetime.fromisoformat(data["datetime"])
    if "date" in data:
        return dt.date.fromisoformat(data["date"])
    if "text" in data:
        return data["text"]
    number = data["number"]
    return float(number) if any(c in number for c in ".eE") else int(number)


class StateStore:
    """A small SQLite file in the workspace; every call is its own short transaction."""

    def __init__(self, workspace: Path):
        self.path = Path(workspace) / "state.db"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            connection.executescript(SCHEMA)
            with connection:
                yield connection
        finally:
            connection.close()

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, source: str) -> SourceState:
        if not self.exists():
            return SourceState(source)
        with self._connect() as db:
            row = db.execute(
                "SELECT watermark, needs_full, reconciled_at, as_of FROM source_state WHERE source=?",
                (source,),
            ).fetchone()
        if row is None:
            return SourceState(source)
        return SourceState(source, decode_position(row[0]), bool(row[1]), row[2], row[3])

    def save(self, state: SourceState) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO source_state (source, watermark, needs_full, reconciled_at, as_of) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET watermark=excluded.watermark,"
                " needs_full=excluded.needs_full, reconciled_at=excluded.reconciled_at,"
                " as_of=excluded.as_of",
                (
                    state.source,
                    encode_position(state.watermark),
                    int(state.needs_full),
                    state.reconciled_at,
                    state.as_of,
                ),
            )

    def require_full(self, source: str) -> None:
        """The next sync of `source` re-reads the whole table (after install, or on demand)."""
        state = self.load(source)
        state.needs_full = True
        self.save(state)

    # -- quarantine -------------------------------------------------------------------------

    def quarantine(self, source: str, reasons: dict[str, list[str]]) -> None:
        """Hold rows back with their reasons (first_seen kept, last_seen refreshed)."""
        if not reasons:
            return
        now = time.time()
        with self._connect() as db:
            db.executemany(
                "INSERT INTO quarantine (source, key, reasons, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(source, key) DO UPDATE SET "
                "reasons=excluded.reasons, last_seen=excluded.last_seen",
                [(source, key, json.dumps(r), now, now) for key, r in sorted(reasons.items())],
            )

    # -- deletes, for the mass-delete guard's window ------------------------------------------

    def record_deletes(self, source: str, count: int, allowed: bool = False) -> None:
        """Log documents deleted from the index (`allowed`: let through by the user)."""
        if count <= 0:
            return
        with self._connect() as db:
            db.execute(
                "INSERT INTO applied_deletes (source, at, count, allowed) VALUES (?, ?, ?, ?)",
                (source, time.time(), count, int(allowed)),
            )

    def deletes_since(self, source: str, since: float) -> int:
        """Documents deleted since `since` (epoch seconds), not counting allowed ones."""
        if not self.exists():
            return 0
        with self._connect() as db:
            db.execute("DELETE FROM applied_deletes WHERE source = ? AND at < ?", (source, since))
            value = db.execute(
                "SELECT COALESCE(SUM(count), 0) FROM applied_deletes "
                "WHERE source = ? AND at >= ? AND allowed = 0",
                (source, since),
            ).fetchone()[0]
        return int(value)

    def release(self, source: str, keys: list[str]) -> int:
        """Rows that passed (or vanished) leave the quarantine; how many did."""
        if not keys or not self.exists():
            return 0
        with self._connect() as db:
            before = db.total_changes
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                db.execute(
                    f"DELETE FROM quarantine WHERE source = ? AND key IN ({','.join('?' * len(part))})",
                    (source, *part),
                )
            return db.total_changes - before

    def quarantined(self, source: str | None = None) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        query = "SELECT source, key, reasons, first_seen, last_seen FROM quarantine"
        args: tuple[Any, ...] = ()
        if source is not None:
            query, args = query + " WHERE source = ?", (source,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY source, key", args).fetchall()
        return [
            {
                "source": r[0],
                "key": r[1],
                "reasons": json.loads(r[2]),
                "first_seen": _iso(r[3]),
                "last_seen": _iso(r[4]),
            }
            for r in rows
        ]

    # -- runs -----------------------------------------------------------------------------

    # -- which labelled rows trained which model version ------------------------------------

    def record_trained_keys(self, version: str, keys: list[str]) -> None:
        with self._connect() as c:
            c.execute("DELETE FROM trained_keys WHERE version = ?", (version,))
            c.executemany(
                "INSERT INTO trained_keys (version, key) VALUES (?, ?)",
                [(version, k) for k in keys],
            )

    def trained_keys(self) -> dict[str, set[str]]:
        """Model version -> the labelled keys it was trained on."""
        if not self.exists():
            return {}
        found: dict[str, set[str]] = {}
        with self._connect() as c:
            for version, key in c.execute("SELECT version, key FROM trained_keys"):
                found.setdefault(version, set()).add(key)
        return found

    def start_run(self, source: str, kind: str) -> int:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (source, kind, started_at, status) VALUES (?, ?, ?, 'running')",
                (source, kind, time.time()),
            )
            return int(cursor.lastrowid or 0)

    def finish_run(
        self, run_id: int, status: str, counts: RunCounts, error: str | None = None
    ) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET finished_at=?, status=?, counts=?, error=? WHERE id=?",
                (time.time(), status, json.dumps(counts.summary()), error, run_id),
            )
            db.execute("DELETE FROM runs WHERE id <= ? - 1000", (run_id,))
            if counts.written_chunks:  # failed runs too: their finished batches are indexed
                db.execute(
                    "INSERT INTO index_holdings (source, written) SELECT source, 1 FROM runs "
                    "WHERE id = ? ON CONFLICT(source) DO UPDATE SET written = 1",
                    (run_id,),
                )

    # -- what the index should hold ---------------------------------------------------------

    def holding(self, source: str) -> Holding:
        """Whether chunks of `source` were ever written, and into which index (its id)."""
        if not self.exists():
            return Holding()
        with self._connect() as db:
            row = db.execute(
                "SELECT index_id, written FROM index_holdings WHERE source = ?", (source,)
            ).fetchone()
        return Holding() if row is None else Holding(row[0], bool(row[1]))

    def record_index(self, source: str, index_id: str) -> None:
        """`source` is indexed into the index with this id."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO index_holdings (source, index_id) VALUES (?, ?) "
                "ON CONFLICT(source) DO UPDATE SET index_id = excluded.index_id",
                (source, index_id),
            )

    def forget_index(self, source: str) -> None:
        """Nothing of `source` is known to be indexed any more (a rebuild starts over)."""
        if not self.exists():
            return
        with self._connect() as db:
            db.execute("DELETE FROM index_holdings WHERE source = ?", (source,))

    def last_runs(self, limit: int = 5) -> list[dict[str, Any]]:
        if not self.exists():
            return []
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, source, kind, started_at, finished_at, status, counts, error "
                "FROM runs ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {
                "id": r[0],
                "source": r[1],
                "kind": r[2],
                "started_at": _iso(r[3]),
                "finished_at": _iso(r[4]),
                "status": r[5],
                "counts": json.loads(r[6]),
                "error": r[7],
            }
            for r in rows
        ]


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")
