"""Changelog capture: a queue table filled by INSERT/UPDATE/DELETE triggers.

`install` creates `ragtune_changelog_<source>` beside the source table and triggers
that append (key, op, changed_at) for every row change, on SQLite, PostgreSQL and
MySQL/MariaDB. On PostgreSQL the trigger also NOTIFYs channel `ragtune_<source>`, so a
follower wakes at once. A sync reads the queue, re-reads the named rows, writes the
index, and only then deletes exactly the queue rows it consumed: a change committed late
behind them stays queued for the next sync, and a crash simply replays.

Trigger DDL carries identifiers only, each quoted by the dialect's identifier preparer
after the table and columns were checked against the live schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import selectors
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ragtune.adapters.sources import SqlSource, describe_db_error
from ragtune.core.documents import as_utc
from ragtune.errors import SourceError

ACK_CHUNK = 500


@dataclass(frozen=True)
class ChangeRow:
    id: int
    key: str
    op: str
    changed_at: dt.datetime


class Changelog:
    """The changelog queue and triggers of one source."""

    def __init__(self, source: SqlSource):
        self.source = source
        self.name = source.name.lower()
        self.table_name = f"ragtune_changelog_{self.name}"
        self.channel = f"ragtune_{self.name}"
        self.queue = _queue_table(self.table_name, source.config.db_schema, source.dialect)

    # -- install ------------------------------------------------------------------------

    def is_installed(self) -> bool:
        inspector = sa.inspect(self.source.engine)
        return inspector.has_table(self.table_name, schema=self.source.config.db_schema)

    def install(self) -> None:
        """Create the queue table and (re)create the triggers; safe to run again."""
        statements = self._trigger_statements()
        try:
            with self.source.engine.begin() as connection:
                self.queue.create(connection, checkfirst=True)
                for statement in self._drop_statements():
                    connection.exec_driver_sql(statement)
                for statement in statements:
                    connection.exec_driver_sql(statement)
        except SQLAlchemyError as exc:
            raise SourceError(
                f"source '{self.source.name}': cannot install the changelog: "
                f"{describe_db_error(exc)}; the user needs CREATE TABLE and CREATE TRIGGER rights"
                " (or use capture: cursor)"
            ) from None

    def uninstall(self) -> None:
        """Drop the triggers and the queue table."""
        try:
            with self.source.engine.begin() as connection:
                for statement in self._drop_statements():
                    connection.exec_driver_sql(statement)
                self.queue.drop(connection, checkfirst=True)
        except SQLAlchemyError as exc:
            raise SourceError(
                f"source '{self.source.name}': cannot uninstall the changelog: "
                f"{describe_db_error(exc)}"
            ) from None

    # -- queue --------------------------------------------------------------------------

    def pending(self, limit: int, after_id: int | None = None) -> list[ChangeRow]:
        """The oldest queued changes (by id), at most `limit`."""
        q = self.queue.c
        query = sa.select(q.id, q.row_key, q.op, q.changed_at).order_by(q.id).limit(limit)
        if after_id is not None:
            query = query.where(q.id > after_id)
        with self.source.engine.connect() as connection:
            rows = connection.execute(query).all()
            connection.rollback()
        now = dt.datetime.now(dt.UTC)
        return [
            ChangeRow(int(r.id), str(r.row_key), str(r.op), as_utc(r.changed_at) or now)
            for r in rows
        ]

    def count(self) -> int:
        with self.source.engine.connect() as connection:
            value = connection.execute(sa.select(sa.func.count()).select_from(self.queue)).scalar()
            connection.rollback()
        return int(value or 0)

    def ack(self, ids: Iterable[int]) -> bool:
        """Delete exactly these queue rows; False when the database was busy (retried later)."""
        ordered = sorted(set(ids))
        try:
            with self.source.engine.begin() as connection:
                for start in range(0, len(ordered), ACK_CHUNK):
                    part = ordered[start : start + ACK_CHUNK]
                    connection.execute(sa.delete(self.queue).where(self.queue.c.id.in_(part)))
        except OperationalError as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                return False
            raise
        return True

    # -- DDL ----------------------------------------------------------------------------

    def _names(self) -> dict[str, str]:
        preparer = self.source.engine.dialect.identifier_preparer
        schema = self.source.config.db_schema
        prefix = f"{preparer.quote_schema(schema)}." if schema else ""
        return {
            "table": preparer.format_table(self.source.table),
            "queue": preparer.format_table(self.queue),
            "key": preparer.quote(self.source.config.key),
            "function": f"{prefix}{preparer.quote(f'ragtune_capture_{self.name}')}",
            "trigger": preparer.quote(f"ragtune_capture_{self.name}"),
            "ins": preparer.quote(f"ragtune_{self.name}_ins"),
            "upd": preparer.quote(f"ragtune_{self.name}_upd"),
            "del": preparer.quote(f"ragtune_{self.name}_del"),
            "channel": _string_literal(self.source, self.channel),
        }

    def _drop_statements(self) -> list[str]:
        n = self._names()
        if self.source.dialect == "postgresql":
            return [
                f"DROP TRIGGER IF EXISTS {n['trigger']} ON {n['table']}",
                f"DROP FUNCTION IF EXISTS {n['function']}()",
            ]
        return [f"DROP TRIGGER IF EXISTS {n[t]}" for t in ("ins", "upd", "del")]

    def _trigger_statements(self) -> list[str]:
        n = self._names()
        columns = "(row_key, op, changed_at)"
        if self.source.dialect == "postgresql":
            body = (
                f"CREATE FUNCTION {n['function']}() RETURNS trigger LANGUAGE plpgsql AS $ragtune$\n"
                "BEGIN\n"
                "  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n"
                f"    INSERT INTO {n['queue']} {columns}"
                f" VALUES (OLD.{n['key']}::text, left(TG_OP, 1), clock_timestamp());\n"
                "  END IF;\n"
                f"  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{n['key']} IS DISTINCT FROM"
                f" OLD.{n['key']}) THEN\n"
                f"    INSERT INTO {n['queue']} {columns}"
                f" VALUES (NEW.{n['key']}::text, left(TG_OP, 1), clock_timestamp());\n"
                "  END IF;\n"
                f"  PERFORM pg_notify({n['channel']}, '');\n"
                "  RETURN NULL;\n"
                "END $ragtune$"
            )
            trigger = (
                f"CREATE TRIGGER {n['trigger']} AFTER INSERT OR UPDATE OR DELETE ON {n['table']}"
                f" FOR EACH ROW EXECUTE FUNCTION {n['function']}()"
            )
            return [body, trigger]
        if self.source.dialect in ("mysql", "mariadb"):
            now = "UTC_TIMESTAMP(6)"
            insert = f"INSERT INTO {n['queue']} {columns} VALUES"
            return [
                f"CREATE TRIGGER {n['ins']} AFTER INSERT ON {n['table']} FOR EACH ROW "
                f"{insert} (NEW.{n['key']}, 'I', {now})",
                f"CREATE TRIGGER {n['upd']} AFTER UPDATE ON {n['table']} FOR EACH ROW BEGIN "
                f"{insert} (OLD.{n['key']}, 'U', {now}); "
                f"IF NOT (NEW.{n['key']} <=> OLD.{n['key']}) THEN "
                f"{insert} (NEW.{n['key']}, 'U', {now}); END IF; END",
                f"CREATE TRIGGER {n['del']} AFTER DELETE ON {n['table']} FOR EACH ROW "
                f"{insert} (OLD.{n['key']}, 'D', {now})",
            ]
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        insert = f"INSERT INTO {n['queue']} {columns}"
        return [
            f"CREATE TRIGGER {n['ins']} AFTER INSERT ON {n['table']} BEGIN "
            f"{insert} VALUES (NEW.{n['key']}, 'I', {now}); END",
            f"CREATE TRIGGER {n['upd']} AFTER UPDATE ON {n['table']} BEGIN "
            f"{insert} VALUES (OLD.{n['key']}, 'U', {now}); "
            f"{insert} SELECT NEW.{n['key']}, 'U', {now} WHERE NEW.{n['key']} IS NOT OLD.{n['key']};"
            " END",
            f"CREATE TRIGGER {n['del']} AFTER DELETE ON {n['table']} BEGIN "
            f"{insert} VALUES (OLD.{n['key']}, 'D', {now}); END",
        ]


def _queue_table(name: str, schema: str | None, dialect: str) -> sa.Table:
    changed_at: sa.types.TypeEngine[Any]
    if dialect == "sqlite":
        changed_at = sa.String(32)  # strftime text, parsed by as_utc
    elif dialect == "postgresql":
        changed_at = postgresql.TIMESTAMP(timezone=True)
    else:
        changed_at = mysql.DATETIME(fsp=6)
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("row_key", sa.String(512), nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sa.Column("changed_at", changed_at, nullable=False),
        schema=schema,
        sqlite_autoincrement=True,
    )


def _string_literal(source: SqlSource, value: str) -> str:
    processor = sa.String().literal_processor(source.engine.dialect)
    assert processor is not None
    return str(processor(value))


class NotifyListener:
    """LISTENs on PostgreSQL channels; `wait` returns the channels that were notified.

    A connection the server dropped makes `wait` raise; `close` always succeeds.
    """

    def __init__(self) -> None:
        self._connections: list[tuple[Any, int]] = []
        self._selector = selectors.DefaultSelector()

    def add(self, changelog: Changelog) -> None:
        import psycopg
        from psycopg import sql

        url = changelog.source.engine.url.set(drivername="postgresql")
        connection = psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True, connect_timeout=10
        )
        connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(changelog.channel)))
        descriptor = connection.fileno()
        self._connections.append((connection, descriptor))
        self._selector.register(descriptor, selectors.EVENT_READ, connection)

    def __bool__(self) -> bool:
        return bool(self._connections)

    def wait(self, timeout: float) -> set[str]:
        """Block up to `timeout` seconds for a notification; the channels that fired."""
        fired: set[str] = set()
        if not self._connections:
            return fired
        for key, _ in self._selector.select(timeout):
            for notify in key.data.notifies(timeout=0.0):
                fired.add(notify.channel)
        return fired

    def close(self) -> None:
        for connection, descriptor in self._connections:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(descriptor)
            with contextlib.suppress(Exception):
                connection.close()
        self._connections.clear()


def installed_or_fail(changelog: Changelog) -> None:
    if not changelog.is_installed():
        raise SourceError(
            f"source '{changelog.source.name}' uses capture: changelog but its changelog is not "
            f"installed; run `ragtune source install {changelog.source.name}`"
        )


def consumed_ids(changes: Sequence[ChangeRow]) -> list[int]:
    return [c.id for c in changes]
