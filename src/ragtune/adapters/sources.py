"""Source tables through SQLAlchemy: SQLite, PostgreSQL (psycopg 3), MySQL/MariaDB (PyMySQL).

Table and column names from params are checked against the live schema and quoted by
SQLAlchemy; every value travels as a bound parameter. Reads are short transactions, so
a sync never holds a source transaction open while it embeds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, NoSuchTableError, SQLAlchemyError

from ragtune.config import SourceConfig
from ragtune.core.documents import UndecodableText, key_text, key_value_text
from ragtune.errors import SourceError

READ_CHUNK = 500  # keys per IN (...) list, under every dialect's parameter limit
DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def normalise_url(url: str) -> URL:
    """Parse a URL and choose the drivers ragtune installs when none is named."""
    parsed = make_url(url)
    if parsed.drivername in DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=DEFAULT_DRIVERS[parsed.drivername])
    return parsed


def create_source_engine(name: str, url: str) -> Engine:
    """An engine with short connect timeouts; a missing SQLite file is an error, not created."""
    try:
        parsed = normalise_url(url)
    except ArgumentError:
        raise SourceError(
            f"source '{name}': url is not a SQLAlchemy URL; "
            "write e.g. sqlite:///data/docs.db or postgresql+psycopg://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise SourceError(f"source '{name}': an in-memory SQLite database cannot be a source")
        if not Path(database).is_file():
            raise SourceError(
                f"source '{name}': SQLite file {database} does not exist; check sources.{name}.url"
            )
        connect_args = {"timeout": 30, "check_same_thread": False}
    elif backend == "postgresql" or backend in ("mysql", "mariadb"):
        connect_args = {"connect_timeout": 10}
    else:
        raise SourceError(
            f"source '{name}': unsupported database '{backend}'; use sqlite, postgresql or mysql"
        )
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
    except NoSuchModuleError:
        raise SourceError(
            f"source '{name}': no driver for {parsed.drivername}; use "
            "postgresql+psycopg, mysql+pymysql or sqlite"
        ) from None
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _decode_text_per_value)
    return engine


def _decode_text(raw: bytes) -> str | bytes:
    """SQLite TEXT as str, or UndecodableText when it is not valid UTF-8: one bad value
    then quarantines its row instead of failing the whole read."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodableText(raw)


def _decode_text_per_value(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.text_factory = _decode_text


def describe_db_error(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's background link."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


@dataclass(frozen=True)
class KeyCodec:
    """Converts key texts back to the key column's Python type for bound parameters."""

    python_type: type | None

    def decode(self, text: str) -> Any:
        text = key_value_text(text)  # ValueError for a label such as NULL_KEY
        kind = self.python_type
        if kind is int:
            return int(text)
        if kind is Decimal:
            return Decimal(text)
        if kind is uuid.UUID:
            return uuid.UUID(text)
        return text


class SqlSource:
    """One configured source table, validated against the live schema."""

    def __init__(self, name: str, config: SourceConfig, engine: Engine, table: sa.Table):
        self.name = name
        self.config = config
        self.engine = engine
        self.table = table
        self.key = table.c[config.key]
        self.codec = KeyCodec(_python_type(self.key))
        # values are read as the driver returns them: a malformed value (text in a SQLite
        # DATETIME column, say) reaches the quality gate instead of failing the read
        self.columns = [
            table.c[c]
            if c == config.key
            else sa.type_coerce(table.c[c], sa.types.NullType()).label(c)
            for c in config.columns()
        ]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def declared_types(self) -> dict[str, str | None]:
        """Each metadata column's type for the quality gate: params override the schema."""
        from ragtune.core.quality import declared_type

        return {
            column: self.config.metadata_types.get(column)
            or declared_type(_python_type(self.table.c[column]))
            for column in self.config.metadata
        }

    @classmethod
    def open(cls, name: str, config: SourceConfig) -> SqlSource:
        """Connect, reflect the table and check every configured column; SourceError if not."""
        engine = create_source_engine(name, config.url)
        where = f"source '{name}'"
        try:
            with engine.connect() as connection:
                table = sa.Table(
                    config.table, sa.MetaData(), schema=config.db_schema, autoload_with=connection
                )
        except NoSuchTableError:
            tables = _table_names(engine, config.db_schema)
            engine.dispose()
            raise SourceError(
                f"{where}: table '{config.table}' not found at {safe_url(config.url)} "
                f"(tables there: {', '.join(tables) or 'none'}); check sources.{name}.table"
            ) from None
        except SQLAlchemyError as exc:
            engine.dispose()
            raise SourceError(
                f"{where}: cannot connect to {safe_url(config.url)}: {describe_db_error(exc)}; "
                f"check that the server runs and sources.{name}.url"
            ) from None
        _check_columns(name, config, table)
        _check_key(name, config, table, engine)
        return cls(name, config, engine, table)

    def close(self) -> None:
        self.engine.dispose()

    # -- reads ------------------------------------------------------------------------

    def read_rows(self, keys: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The current rows of these keys (by key text); absent keys are simply missing."""
        rows: dict[str, Mapping[str, Any]] = {}
        decoded = []
        for text in keys:
            try:
                decoded.append(self.codec.decode(text))
            except (ValueError, ArithmeticError):
                continue  # a key text that cannot name a row of this table
        with self.engine.connect() as connection:
            for start in range(0, len(decoded), READ_CHUNK):
                part = decoded[start : start + READ_CHUNK]
                query = sa.select(*self.columns).where(self.key.in_(part))
                for row in connection.execute(query).mappings():
                    rows[key_text(row[self.config.key])] = dict(row)
            connection.rollback()
        return rows

    def scan(self, batch_size: int, after: Any = None) -> Iterator[list[dict[str, Any]]]:
        """Every row (after key value `after`), in key order, a page at a time (keyset
        pagination): a scan that failed resumes from the last key it yielded."""
        last: Any = after
        while True:
            query = (
                sa.select(*self.columns)
                .where(self.key.is_not(None))  # NULL keys: null_keys(), quarantined
                .order_by(self.key)
                .limit(batch_size)
            )
            if last is not None:
                query = query.where(self.key > last)
            with self.engine.connect() as connection:
                page = [dict(row) for row in connection.execute(query).mappings()]
                connection.rollback()
            if not page:
                return
            yield page
            last = page[-1][self.config.key]

    def present_keys(self) -> set[str]:
        """Keys of the rows that are present and not soft-deleted."""
        from ragtune.core.documents import is_soft_deleted

        columns = [self.key]
        if self.config.deleted:
            columns.append(self.table.c[self.config.deleted])
        keys: set[str] = set()
        with self.engine.connect() as connection:
            for row in connection.execute(sa.select(*columns).where(self.key.is_not(None))):
                if self.config.deleted and is_soft_deleted(row[1]):
                    continue
                keys.add(key_text(row[0]))
            connection.rollback()
        return keys

    def null_keys(self) -> int:
        """How many rows have a NULL key (legal in a unique column; never indexable)."""
        query = sa.select(sa.func.count()).select_from(self.table).where(self.key.is_(None))
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar()
            connection.rollback()
        return int(value or 0)

    def count(self) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(sa.func.count()).select_from(self.table)).scalar()
            connection.rollback()
        return int(value or 0)

    def max_updated_at(self) -> Any:
        """The newest updated_at, as stored (the cursor compares values as stored)."""
        column = self.table.c[self.config.updated_at or self.config.key]
        newest = sa.type_coerce(sa.func.max(column), sa.types.NullType())
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(newest)).scalar()
            connection.rollback()
        return value

    def changed_since(
        self, low: Any, after: tuple[Any, Any] | None, batch_size: int
    ) -> list[dict[str, Any]]:
        """Rows with updated_at >= low, ordered by (updated_at, key), after a page boundary."""
        assert self.config.updated_at
        updated = self.table.c[self.config.updated_at]
        query = sa.select(*self.columns).order_by(updated, self.key).limit(batch_size)
        if after is None:
            if low is not None:
                query = query.where(updated >= low)
        else:
            at, key = after  # `at` is a value as read: bound as is, compared as stored
            stored = sa.type_coerce(updated, sa.types.NullType())
            raw_at = sa.bindparam("page_at", at, type_=sa.types.NullType())
            query = query.where(sa.or_(stored > raw_at, sa.and_(stored == raw_at, self.key > key)))
        with self.engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(query).mappings()]
            connection.rollback()
        return rows


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _table_names(engine: Engine, schema: str | None) -> list[str]:
    try:
        names = sa.inspect(engine).get_table_names(schema=schema)
    except SQLAlchemyError:
        return []
    return sorted(n for n in names if not n.startswith("ragtune_"))[:20]


def _check_columns(name: str, config: SourceConfig, table: sa.Table) -> None:
    present = list(table.c.keys())
    roles = [("key", [config.key]), ("text", config.text), ("metadata", config.metadata)]
    roles += [
        (r, [c])
        for r, c in (
            ("updated_at", config.updated_at),
            ("deleted", config.deleted),
            ("tenant", config.tenant),
        )
        if c
    ]
    for role, columns in roles:
        for column in columns:
            if column not in present:
                raise SourceError(
                    f"source '{name}': column '{column}' ({role}) not found in table "
                    f"'{config.table}' (columns: {', '.join(present)}); check sources.{name}.{role}"
                )
    if config.updated_at and config.capture == "cursor":
        kind = _python_type(table.c[config.updated_at])
        if kind not in (dt.datetime, dt.date, int, float, Decimal):
            raise SourceError(
                f"source '{name}': updated_at column '{config.updated_at}' must be a timestamp "
                "or a number for capture: cursor"
            )


def _check_key(name: str, config: SourceConfig, table: sa.Table, engine: Engine) -> None:
    """The key must identify one row: the single-column primary key or a unique column."""
    primary = [c.name for c in table.primary_key.columns]
    if primary == [config.key]:
        return
    inspector = sa.inspect(engine)
    unique = [
        entry.get("column_names")
        for entry in inspector.get_unique_constraints(config.table, schema=config.db_schema)
    ] + [
        entry.get("column_names")
        for entry in inspector.get_indexes(config.table, schema=config.db_schema)
        if entry.get("unique")
    ]
    if [config.key] in unique:
        return
    raise SourceError(
        f"source '{name}': key column '{config.key}' is neither the primary key nor unique in "
        f"'{config.table}' (primary key: {', '.join(primary) or 'none'}); set sources.{name}.key "
        "to a unique column"
    )
