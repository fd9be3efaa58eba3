"""Changelog capture: a queue table filled by INSERT/UPDATE/DELETE triggers.

`install` creates one queue per consumer (a workspace's source) beside the source table,
and triggers that append (key, op, changed_at) for every row change, on SQLite,
PostgreSQL and MySQL/MariaDB. On PostgreSQL the trigger also NOTIFYs the queue's channel,
so a follower wakes at once. A sync reads the queue, re-reads the named rows, writes the
index, and only then deletes exactly the queue rows it consumed: a change committed late
behind them stays queued for the next sync, and a crash simply replays.

One queue per consumer: queue, trigger and channel names carry a tag made from the
workspace's id (`<workspace>/consumer.id`) and the source's exact name, so two workspaces
on one table, or sources `docs` and `DOCS`, never acknowledge each other's changes. The
table `ragtune_consumers` records which workspace each queue belongs to.

Keys are stored so that they compare like the row's own key, and re-read by the
database's own comparison (`key IN (SELECT queued key ...)`), never by a text round trip:
an untyped SQLite key keeps its storage class, PostgreSQL keys are cast back to the key
column's type (char(n) padding included), MySQL keys keep the column's type and
collation. A NULL key is queued as NULL (a trigger never fails the application's write)
and the sync quarantines it. Every distinct key value a row takes is queued (byte-wise
comparison of old and new key), so a case-only key change under a case-insensitive
collation names both keys.

Trigger DDL carries identifiers and the key column's type as the database itself spells
it, each quoted by the dialect's identifier preparer after the table and columns were
checked against the live schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import selectors
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ragtune.adapters.sources import SqlSource, describe_db_error
from ragtune.core.documents import NULL_KEY, as_utc, key_text
from ragtune.errors import ConfigError, SourceError

ACK_CHUNK = 500
CONSUMER_FILE = "consumer.id"
REGISTRY = "ragtune_consumers"
MYSQL_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class ChangeRow:
    id: int
    key: str  # the key's text, or NULL_KEY for a row written with a NULL key
    op: str
    changed_at: dt.datetime


def workspace_id(workspace: Path, create: bool = False) -> str | None:
    """The workspace's consumer id; with `create`, make it and prove the folder writable.

    ConfigError (one line) when the workspace cannot be written: `source install` calls
    this before any DDL, so a failed install leaves no triggers behind.
    """
    path = Path(workspace) / CONSUMER_FILE
    try:
        current = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    except OSError as exc:
        raise ConfigError(
            f"workspace {workspace} is not readable ({exc.strerror or exc}); "
            "fix its permissions or set workspace.path"
        ) from None
    if not create:
        return current or None
    try:
        Path(workspace).mkdir(parents=True, exist_ok=True)
        probe = Path(workspace) / f".write-check-{uuid.uuid4().hex[:8]}"
        probe.write_text(current or uuid.uuid4().hex[:16], encoding="utf-8")
        if current:
            probe.unlink()
        else:
            os.replace(probe, path)
            current = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"workspace {workspace} is not writable ({exc.strerror or exc}); "
            "fix its permissions or set workspace.path, then run `ragtune source install` again"
        ) from None
    return current


class Changelog:
    """The changelog queue and triggers of one source, for one workspace (its consumer)."""

    def __init__(self, source: SqlSource, workspace: Path):
        self.source = source
        self.workspace = Path(workspace)
        self._bind(workspace_id(self.workspace))

    def _bind(self, consumer: str | None) -> None:
        self.consumer = consumer
        slug = self.source.name.lower()[:24]
        tag = hashlib.sha256(f"{consumer}\0{self.source.name}".encode()).hexdigest()[:10]
        self.base = f"{slug}_{tag}"
        self.table_name = f"ragtune_cl_{self.base}"
        self.channel = f"ragtune_{self.base}"
        self.legacy_name = f"ragtune_changelog_{self.source.name.lower()}"
        self._storage: str | None = None
        self._spelled_key: str | None = None
        self.queue = _queue_table(
            self.table_name, self.source.config.db_schema, self._storage_type()
        )

    # -- install ------------------------------------------------------------------------

    def is_installed(self) -> bool:
        if self.consumer is None:
            return False
        inspector = sa.inspect(self.source.engine)
        return inspector.has_table(self.table_name, schema=self.source.config.db_schema)

    def has_legacy_queue(self) -> bool:
        """A queue of ragtune before per-consumer queues (shared, fixed-width keys)."""
        inspector = sa.inspect(self.source.engine)
        return inspector.has_table(self.legacy_name, schema=self.source.config.db_schema)

    def install(self) -> None:
        """Create the queue table and (re)create the triggers; safe to run again.

        Upgrades in place: an older shared queue and its triggers are removed (each
        workspace then installs its own), and a queue whose key column no longer matches
        the source's key column type is altered to match.
        """
        self._bind(workspace_id(self.workspace, create=True))
        statements = self._trigger_statements()
        registry = _registry_table(self.source.config.db_schema)
        try:
            with self.source.engine.begin() as connection:
                if self.has_legacy_queue():
                    for statement in self._legacy_drop_statements():
                        connection.exec_driver_sql(statement)
                    legacy = sa.Table(
                        self.legacy_name, sa.MetaData(), schema=self.source.config.db_schema
                    )
                    legacy.drop(connection, checkfirst=True)
                registry.create(connection, checkfirst=True)
                self.queue.create(connection, checkfirst=True)
                self._upgrade_queue(connection)
                for statement in self._drop_statements():
                    connection.exec_driver_sql(statement)
                for statement in statements:
                    connection.exec_driver_sql(statement)
                connection.execute(registry.delete().where(registry.c.queue == self.table_name))
                connection.execute(
                    registry.insert().values(
                        queue=self.table_name,
                        source=self.source.name,
                        source_table=self.source.config.table,
                        workspace=self.consumer,
                        workspace_path=str(self.workspace.resolve())[:1000],
                        installed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                    )
                )
        except SQLAlchemyError as exc:
            raise SourceError(
                f"source '{self.source.name}': cannot install the changelog: "
                f"{describe_db_error(exc)}; the user needs CREATE TABLE and CREATE TRIGGER rights"
                " (or use capture: cursor)"
            ) from None

    def uninstall(self) -> None:
        """Drop this consumer's triggers and queue (and the registry once it is empty)."""
        if self.consumer is None:
            return
        registry = _registry_table(self.source.config.db_schema)
        inspector = sa.inspect(self.source.engine)
        try:
            with self.source.engine.begin() as connection:
                for statement in self._drop_statements():
                    connection.exec_driver_sql(statement)
                self.queue.drop(connection, checkfirst=True)
                if inspector.has_table(REGISTRY, schema=self.source.config.db_schema):
                    connection.execute(registry.delete().where(registry.c.queue == self.table_name))
                    left = connection.execute(
                        sa.select(sa.func.count()).select_from(registry)
                    ).scalar()
                    if not left:
                        registry.drop(connection)
        except SQLAlchemyError as exc:
            raise SourceError(
                f"source '{self.source.name}': cannot uninstall the changelog: "
                f"{describe_db_error(exc)}"
            ) from None

    def consumers(self) -> list[dict[str, Any]]:
        """Every queue installed on this database: which workspace consumes which source."""
        registry = _registry_table(self.source.config.db_schema)
        if not sa.inspect(self.source.engine).has_table(
            REGISTRY, schema=self.source.config.db_schema
        ):
            return []
        with self.source.engine.connect() as connection:
            rows = connection.execute(sa.select(registry).order_by(registry.c.queue)).mappings()
            found = [dict(r) for r in rows]
            connection.rollback()
        return found

    # -- queue --------------------------------------------------------------------------

    def _queued_key(self) -> sa.ColumnElement[Any]:
        """The queued key as a value of the source's key column type."""
        column: sa.ColumnElement[Any] = self.queue.c.row_key
        if self.source.dialect == "postgresql":
            column = sa.cast(column, _Spelled(self._key_type()))
        return column

    def pending(self, limit: int, after_id: int | None = None) -> list[ChangeRow]:
        """The oldest queued changes (by id), at most `limit`."""
        q = self.queue.c
        value = sa.type_coerce(self._queued_key(), self.source.key.type).label("row_key")
        query = sa.select(q.id, value, q.op, q.changed_at).order_by(q.id).limit(limit)
        if after_id is not None:
            query = query.where(q.id > after_id)
        with self.source.engine.connect() as connection:
            rows = connection.execute(query).all()
            connection.rollback()
        now = dt.datetime.now(dt.UTC)
        return [
            ChangeRow(
                int(r.id),
                NULL_KEY if r.row_key is None else key_text(r.row_key),
                str(r.op),
                as_utc(r.changed_at) or now,
            )
            for r in rows
        ]

    def read_rows(self, ids: Sequence[int]) -> dict[str, Mapping[str, Any]]:
        """The current rows of the keys these queue rows name, by the row's own key text.

        The match is the database's own key comparison against the queued value; a row
        found under another key text (a case-insensitive match, say) is returned under
        its own key, which the queue names too.
        """
        rows: dict[str, Mapping[str, Any]] = {}
        ordered = sorted(set(ids))
        with self.source.engine.connect() as connection:
            for start in range(0, len(ordered), ACK_CHUNK):
                part = ordered[start : start + ACK_CHUNK]
                queued = sa.select(self._queued_key()).where(self.queue.c.id.in_(part))
                query = sa.select(*self.source.columns).where(self.source.key.in_(queued))
                for row in connection.execute(query).mappings():
                    value = row[self.source.config.key]
                    if value is not None:
                        rows[key_text(value)] = dict(row)
            connection.rollback()
        return rows

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

    # -- the key column's type ----------------------------------------------------------

    def _key_type(self) -> str:
        """The key column's type as PostgreSQL spells it (format_type), e.g. character(5)."""
        if self._spelled_key is not None:
            return self._spelled_key
        preparer = self.source.engine.dialect.identifier_preparer
        with self.source.engine.connect() as connection:
            spelled = connection.execute(
                sa.text(
                    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "WHERE a.attrelid = CAST(:rel AS regclass) AND a.attname = :col "
                    "AND NOT a.attisdropped"
                ),
                {"rel": preparer.format_table(self.source.table), "col": self.source.config.key},
            ).scalar()
            connection.rollback()
        self._spelled_key = str(spelled or "text")
        return self._spelled_key

    def _storage_type(self) -> str:
        """The queue's key column: it must hold every legal key, NULL included.

        SQLite: BLOB affinity, so a key keeps its storage class (integer 7 stays 7, text
        '7' stays text). PostgreSQL: text of any length, cast back to the key's type when
        read. MySQL/MariaDB: the key column's own type, character set and collation.
        """
        if self._storage is not None:
            return self._storage
        dialect = self.source.dialect
        if dialect == "sqlite":
            self._storage = "BLOB"
        elif dialect == "postgresql":
            self._storage = "TEXT"
        else:
            self._storage = self._mysql_column_type(
                self.source.config.table, self.source.config.key
            )
        return self._storage

    def _mysql_column_type(self, table: str, column: str) -> str:
        query = sa.text(
            "SELECT COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
            " AND COLUMN_NAME = :column"
        )
        with self.source.engine.connect() as connection:
            found = connection.execute(
                query, {"schema": self.source.config.db_schema, "table": table, "column": column}
            ).first()
            connection.rollback()
        if found is None:
            return ""
        spelled = str(found[0])  # as the server spells it, e.g. varchar(600), int(11) unsigned
        charset, collation = found[1], found[2]
        if charset and collation and MYSQL_NAME.match(charset) and MYSQL_NAME.match(collation):
            spelled += f" CHARACTER SET {charset} COLLATE {collation}"
        return spelled

    def _upgrade_queue(self, connection: sa.Connection) -> None:
        """MySQL: follow a key column whose type changed since the queue was made."""
        if self.source.dialect not in ("mysql", "mariadb"):
            return
        query = sa.text(
            "SELECT COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
            " AND COLUMN_NAME = 'row_key'"
        )
        found = connection.execute(
            query, {"schema": self.source.config.db_schema, "table": self.table_name}
        ).first()
        current = "" if found is None else str(found[0])
        if found is not None and found[1] and found[2]:
            current += f" CHARACTER SET {found[1]} COLLATE {found[2]}"
        if current != self._storage_type():
            queue = self.source.engine.dialect.identifier_preparer.format_table(self.queue)
            connection.exec_driver_sql(
                f"ALTER TABLE {queue} MODIFY row_key {self._storage_type()} NULL"
            )

    # -- DDL ----------------------------------------------------------------------------

    def _names(self) -> dict[str, str]:
        preparer = self.source.engine.dialect.identifier_preparer
        schema = self.source.config.db_schema
        prefix = f"{preparer.quote_schema(schema)}." if schema else ""
        return {
            "table": preparer.format_table(self.source.table),
            "queue": preparer.format_table(self.queue),
            "key": preparer.quote(self.source.config.key),
            "function": f"{prefix}{preparer.quote(f'ragtune_capture_{self.base}')}",
            "trigger": preparer.quote(f"ragtune_capture_{self.base}"),
            "ins": preparer.quote(f"ragtune_{self.base}_ins"),
            "upd": preparer.quote(f"ragtune_{self.base}_upd"),
            "del": preparer.quote(f"ragtune_{self.base}_del"),
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

    def _legacy_drop_statements(self) -> list[str]:
        """The triggers of a shared queue made before per-consumer queues."""
        preparer = self.source.engine.dialect.identifier_preparer
        schema = self.source.config.db_schema
        prefix = f"{preparer.quote_schema(schema)}." if schema else ""
        old = self.source.name.lower()
        table = preparer.format_table(self.source.table)
        if self.source.dialect == "postgresql":
            name = preparer.quote(f"ragtune_capture_{old}")
            return [
                f"DROP TRIGGER IF EXISTS {name} ON {table}",
                f"DROP FUNCTION IF EXISTS {prefix}{name}()",
            ]
        return [
            f"DROP TRIGGER IF EXISTS {preparer.quote(f'ragtune_{old}_{op}')}"
            for op in ("ins", "upd", "del")
        ]

    def _trigger_statements(self) -> list[str]:
        n = self._names()
        columns = "(row_key, op, changed_at)"
        key = n["key"]
        if self.source.dialect == "postgresql":
            # every distinct key text is queued: byte-wise, so a nondeterministic
            # (case-insensitive) collation cannot fold a key change into one entry
            changed = (
                f'(NEW.{key}::text COLLATE "C") IS DISTINCT FROM (OLD.{key}::text COLLATE "C")'
            )
            body = (
                f"CREATE FUNCTION {n['function']}() RETURNS trigger LANGUAGE plpgsql AS $ragtune$\n"
                "BEGIN\n"
                "  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n"
                f"    INSERT INTO {n['queue']} {columns}"
                f" VALUES (OLD.{key}::text, left(TG_OP, 1), clock_timestamp());\n"
                "  END IF;\n"
                f"  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND {changed}) THEN\n"
                f"    INSERT INTO {n['queue']} {columns}"
                f" VALUES (NEW.{key}::text, left(TG_OP, 1), clock_timestamp());\n"
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
            same = f"CAST(NEW.{key} AS BINARY) <=> CAST(OLD.{key} AS BINARY)"
            return [
                f"CREATE TRIGGER {n['ins']} AFTER INSERT ON {n['table']} FOR EACH ROW "
                f"{insert} (NEW.{key}, 'I', {now})",
                f"CREATE TRIGGER {n['upd']} AFTER UPDATE ON {n['table']} FOR EACH ROW BEGIN "
                f"{insert} (OLD.{key}, 'U', {now}); "
                f"IF NOT ({same}) THEN "
                f"{insert} (NEW.{key}, 'U', {now}); END IF; END",
                f"CREATE TRIGGER {n['del']} AFTER DELETE ON {n['table']} FOR EACH ROW "
                f"{insert} (OLD.{key}, 'D', {now})",
            ]
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        insert = f"INSERT INTO {n['queue']} {columns}"
        # `IS NOT` sees a storage-class change (7 -> '7'); the BLOB casts see a change
        # that a NOCASE collation would call equal
        changed = (
            f"NEW.{key} IS NOT OLD.{key} OR CAST(NEW.{key} AS BLOB) IS NOT CAST(OLD.{key} AS BLOB)"
        )
        return [
            f"CREATE TRIGGER {n['ins']} AFTER INSERT ON {n['table']} BEGIN "
            f"{insert} VALUES (NEW.{key}, 'I', {now}); END",
            f"CREATE TRIGGER {n['upd']} AFTER UPDATE ON {n['table']} BEGIN "
            f"{insert} VALUES (OLD.{key}, 'U', {now}); "
            f"{insert} SELECT NEW.{key}, 'U', {now} WHERE {changed};"
            " END",
            f"CREATE TRIGGER {n['del']} AFTER DELETE ON {n['table']} BEGIN "
            f"{insert} VALUES (OLD.{key}, 'D', {now}); END",
        ]


class _Spelled(sa.types.UserDefinedType[Any]):
    """A column type given as the database spells it (no conversion of values)."""

    cache_ok = True

    def __init__(self, spelled: str):
        self.spelled = spelled

    def get_col_spec(self, **kw: Any) -> str:
        return self.spelled


def _queue_table(name: str, schema: str | None, storage: str) -> sa.Table:
    changed_at: sa.types.TypeEngine[Any] = sa.String(32)  # SQLite: strftime text (as_utc)
    changed_at = changed_at.with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
    changed_at = changed_at.with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        # nullable: a NULL key is legal in a unique column, and a trigger must never fail
        # the application's write; the sync quarantines it (NULL_KEY)
        sa.Column("row_key", _Spelled(storage or "TEXT"), nullable=True),
        sa.Column("op", sa.String(1), nullable=False),
        sa.Column("changed_at", changed_at, nullable=False),
        schema=schema,
        sqlite_autoincrement=True,
    )


def _registry_table(schema: str | None) -> sa.Table:
    return sa.Table(
        REGISTRY,
        sa.MetaData(),
        sa.Column("queue", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_table", sa.String(255), nullable=False),
        sa.Column("workspace", sa.String(64), nullable=False),
        sa.Column("workspace_path", sa.String(1000), nullable=False),
        sa.Column("installed_at", sa.DateTime(), nullable=False),
        schema=schema,
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
    if changelog.is_installed():
        return
    if changelog.has_legacy_queue():
        raise SourceError(
            f"source '{changelog.source.name}': its changelog was installed by an older "
            "ragtune (one queue shared by every workspace, too narrow for some keys); run "
            f"`ragtune source install {changelog.source.name}` again to upgrade it"
        )
    raise SourceError(
        f"source '{changelog.source.name}' uses capture: changelog but its changelog is not "
        f"installed; run `ragtune source install {changelog.source.name}`"
    )


def consumed_ids(changes: Sequence[ChangeRow]) -> list[int]:
    return [c.id for c in changes]
