"""Database fixtures: ``db_engine`` runs a test on SQLite (in HEARTH_HOME) and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hearth.config import Settings
from hearth.db import Base, create_database_engine, open_database
from tests.postgres import find_bin_dir, start_cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the whole session (skips when none is installed)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/postgres):"
            " run scripts/install_system_deps.sh (make setup-dev does)"
        )
    cluster = start_cluster(bin_dir)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, hearth_home: Path) -> str:
    """The database URL a test runs against: the default SQLite file, or PostgreSQL."""
    if request.param == "sqlite":
        return Settings.from_env({"HEARTH_HOME": str(hearth_home)}).effective_database_url
    url: str = request.getfixturevalue("postgres_url")
    return url


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
