"""Database fixtures: ``db_engine`` runs a test on SQLite (in HEARTH_HOME) and on PostgreSQL;
``server_database_url`` does the same for a live server (``HEARTH_DATABASE_URL``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hearth.config import Settings
from hearth.db import Base, create_database_engine, open_database
from tests.postgres import fresh_database, throwaway_cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the whole session (skips when none is installed)."""
    with throwaway_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, hearth_home: Path) -> str:
    """The database URL a test runs against: the default SQLite file, or PostgreSQL."""
    if request.param == "sqlite":
        return Settings.from_env({"HEARTH_HOME": str(hearth_home)}).effective_database_url
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """HEARTH_DATABASE_URL for a module's live server: "" (the default, SQLite in its
    HEARTH_HOME) or a fresh PostgreSQL database, dropped when the module's tests end."""
    if request.param == "sqlite":
        yield ""
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database; PostgreSQL tables are dropped afterwards."""
    engine = create_database_engine(db_url)
    try:
        yield engine
    finally:
        if engine.dialect.name != "sqlite":
            Base.metadata.drop_all(engine)
        engine.dispose()


@pytest.fixture
def sqlite_engine(hearth_home: Path) -> Iterator[Engine]:
    engine = open_database(Settings.from_env({"HEARTH_HOME": str(hearth_home)}))
    yield engine
    engine.dispose()
