"""Teams and the limit columns keys and teams share, in the keys database.

Tables are created with ``create_all``, which never alters a table: a database made before the
limit columns existed gets them added (``ALTER TABLE ... ADD COLUMN``, nullable, so existing
keys have no limits) the first time a store opens it. :class:`UpgradingSessions` does that.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DefaultClause,
    Engine,
    Float,
    Integer,
    String,
    Table,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from hearth.db import Base, Sessions, UTCDateTime, utcnow
from hearth.errors import ValidationError
from hearth.governance.limits import Limits, checked

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
LIMIT_FIELDS = ("rpm", "tpm", "daily_tokens", "monthly_tokens", "concurrent", "monthly_budget")


class LimitColumns:
    """Mixin: one nullable column per limit (None: no limit)."""

    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    monthly_budget: Mapped[float | None] = mapped_column(Float, nullable=True)


def limits_of(row: LimitColumns) -> Limits:
    return Limits(**{name: getattr(row, name) for name in LIMIT_FIELDS})


def store_limits(row: LimitColumns, limits: Limits) -> None:
    for name in LIMIT_FIELDS:
        setattr(row, name, getattr(checked(limits), name))


class TeamRow(LimitColumns, Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class TeamInfo:
    name: str
    limits: Limits
    created: datetime


class UpgradingSessions(Sessions):
    """Sessions that also add columns a table lacks (a database from an older Hearth)."""

    def __init__(self, engine: Engine, *tables: Table) -> None:
        super().__init__(engine, *tables)
        self._upgrade_tables = list(tables)
        self._upgraded = False

    def _create_tables(self) -> None:
        super()._create_tables()
        if not self._upgraded:
            for table in self._upgrade_tables:
                add_missing_columns(self.engine, table)
            self._upgraded = True


def add_missing_columns(engine: Engine, table: Table) -> None:
    """ALTER TABLE ADD COLUMN for each nullable column of ``table`` the database lacks."""
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    for column in table.columns:
        default = _server_default(column, engine)
        if column.name in present or (not column.nullable and default is None):
            continue
        kind = column.type.compile(dialect=engine.dialect)
        guard = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
        extra = "" if default is None else f" DEFAULT {default} NOT NULL"
        statement = f'ALTER TABLE {table.name} ADD COLUMN {guard}"{column.name}" {kind}{extra}'
        try:
            with engine.begin() as connection:
                connection.execute(text(statement))
        except DBAPIError as error:  # another process added it first ("duplicate column")
            if "duplicate" not in str(error.orig).lower():
                raise


def _server_default(column: Column[Any], engine: Engine) -> str | None:
    """The column's server default as SQL (a NOT NULL column can be added only with one)."""
    default = column.server_default
    if not isinstance(default, DefaultClause):
        return None
    if isinstance(default.arg, str):
        return "'" + default.arg.replace("'", "''") + "'"
    return str(default.arg.compile(dialect=engine.dialect))


class TeamStore:
    """Teams and their limits (table ``teams``). A key names its team; a team without a row
    here simply has no limits of its own."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = UpgradingSessions(engine, TeamRow.__table__)  # type: ignore[arg-type]

    def create(self, name: str, limits: Limits) -> TeamInfo:
        row = TeamRow(name=checked_name("team", name), created=utcnow())
        store_limits(row, limits)
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise ValidationError("team", name, "a team with this name exists") from None
        return _team(row)

    def set(self, name: str, changes: Limits, cleared: frozenset[str] = frozenset()) -> TeamInfo:
        """Change some of a team's limits (``cleared`` names limits to remove)."""
        with self._sessions.begin() as session:
            row = session.scalar(select(TeamRow).where(TeamRow.name == name))
            if row is None:
                raise ValidationError("team", name, "no team has this name (hearth teams create)")
            store_limits(row, limits_of(row).merged(changes, cleared))
            return _team(row)

    def get(self, name: str) -> TeamInfo | None:
        with self._sessions.begin() as session:
            row = session.scalar(select(TeamRow).where(TeamRow.name == name))
            return None if row is None else _team(row)

    def list(self) -> builtins.list[TeamInfo]:
        with self._sessions.begin() as session:
            return [_team(row) for row in session.scalars(select(TeamRow).order_by(TeamRow.name))]


def _team(row: TeamRow) -> TeamInfo:
    return TeamInfo(name=row.name, limits=limits_of(row), created=row.created)


def checked_name(param: str, value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        reason = "must be 1-64 letters, digits or . _ @ - (starting with a letter or digit)"
        raise ValidationError(param, value, reason)
    return value
