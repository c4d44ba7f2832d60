"""The database fixtures of tests/server (SQLite and PostgreSQL) for the audit log tests."""

from tests.server.conftest import db_engine, db_url, postgres_url

__all__ = ["db_engine", "db_url", "postgres_url"]
