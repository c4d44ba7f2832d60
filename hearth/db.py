"""The database behind API keys and usage records: SQLAlchemy 2.0, SQLite by default.

``HEARTH_DATABASE_URL`` (see :mod:`hearth.config`) picks it: ``sqlite:///$HEARTH_HOME/hearth.db``
unless set, or ``postgresql+psycopg://...`` with the ``postgres`` extra. :func:`open_database`
builds the engine without touching the disk or the network; each store (``KeyStore``,
``UsageLog``) creates its own tables on first use through :class:`Sessions`.

SQLite runs in WAL mode with a busy timeout, so readers never block the writer and concurrent
writers (several threads, or several ``hearth`` processes) wait their turn instead of failing
with "database is locked".

Tables are created with ``metadata.create_all`` (it never alters an existing table). Processes
that start together (``hearth serve`` beside ``hearth keys create``) may race to create them: on
PostgreSQL each creator first takes a transaction-scoped advisory lock, so the second waits and
then finds the tables; on SQLite the loser's CREATE fails with "already exists" and is retried.

Schema changes: Migrations (Alembic) come later, with the first change to a released schema.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    Table,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from hearth.config import Settings
from hearth.errors import ConfigError, DatabaseError

SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another one to finish
_CREATE_ATTEMPTS = 3
_SCHEMA_LOCK_KEY = 0x4845415254480001  # PostgreSQL advisory lock id ("HEARTH" + 1): table creation


class Base(DeclarativeBase):
    """Declarative base of every Hearth table."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones: values are stored as naive UTC and come back aware. Naive values
    passed in are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def open_database(settings: Settings) -> Engine:
    """The engine for ``settings.effective_database_url`` (no connection is made yet)."""
    return create_database_engine(settings.effective_database_url)


def create_database_engine(url: str) -> Engine:
    parsed = _parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return create_engine(parsed, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        hint = " (pip install 'hearth-llm[postgres]')" if "postgres" in parsed.drivername else ""
        raise ConfigError(f"HEARTH_DATABASE_URL: no driver for {parsed.drivername}{hint}") from (
            error
        )


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise ConfigError(f"HEARTH_DATABASE_URL is not a database URL: {url!r}") from None


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or "mode=memory" in database or ":memory:" in database:
        # Each pooled connection (each thread) would see a database of its own.
        raise ConfigError("HEARTH_DATABASE_URL: in-memory SQLite is not supported; name a file")
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "do_connect")
    def _make_parent(*_: Any) -> None:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _pragmas(connection: sqlite3.Connection, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no commit
        cursor.close()

    return engine


class Sessions:
    """Transactions on ``engine``, creating ``tables`` (if missing) before the first one."""

    def __init__(self, engine: Engine, *tables: Table) -> None:
        self.engine = engine
        self._tables = list(tables)
        self._factory = sessionmaker(engine, expire_on_commit=False)
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on an exception."""
        with _database_errors(self.engine):
            self._create_tables()
            with self._factory.begin() as session:
                yield session

    def _create_tables(self) -> None:
        with self._lock:
            if self._ready:
                return
            for attempt in range(_CREATE_ATTEMPTS):
                try:
                    with self.engine.begin() as connection:
                        _lock_schema(connection)
                        Base.metadata.create_all(connection, tables=self._tables)
                    break
                except DBAPIError:
                    # Another process created a table between our check and our CREATE
                    # ("already exists"); the next attempt's check sees it.
                    if attempt == _CREATE_ATTEMPTS - 1:
                        raise
            self._ready = True


def _lock_schema(connection: Connection) -> None:
    """On PostgreSQL, wait for any other process creating tables (released at commit)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})


@contextmanager
def _database_errors(engine: Engine) -> Iterator[None]:
    """Turn "cannot reach / cannot use the database" into a DatabaseError without the password."""
    try:
        yield
    except (OperationalError, InterfaceError) as error:
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseError(f"database {where}: {error.orig}") from error
