"""KeyStore on SQLite and PostgreSQL: secrets shown once, stored hashed; verify, revoke, scope."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

import hearth.db
from hearth.config import Settings
from hearth.db import create_database_engine
from hearth.errors import (
    AuthenticationError,
    ConfigError,
    HearthError,
    PermissionDeniedError,
    ValidationError,
)
from hearth.server.keys import KeyStore, model_allowed
from hearth.server.usage import UsageLog

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys(db_engine: Engine, clock: FakeClock) -> KeyStore:
    return KeyStore(db_engine, clock=clock)


def test_secret_is_shown_once_and_stored_hashed(keys: KeyStore, db_engine: Engine) -> None:
    created = keys.create("app-1", models=None, expires=None, team="a")
    secret = created.secret
    assert secret.startswith("hth_") and len(secret) == 47
    assert secret not in repr(created)
    assert created.info.prefix == secret[:12]
    assert (created.info.name, created.info.team, created.info.models) == ("app-1", "a", None)

    with db_engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM api_keys")).mappings().one()
    stored = " ".join(str(value) for value in row.values())
    assert secret not in stored and secret[12:] not in stored
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["prefix"] == secret[:12]


def test_verify_returns_the_key_and_records_last_used(keys: KeyStore, clock: FakeClock) -> None:
    created = keys.create("app-1", models=["tiny"], expires=None)
    keys.create("app-2", models=None, expires=None)
    clock.advance(minutes=5)
    info = keys.verify(created.secret)
    assert (info.name, info.models, info.last_used) == ("app-1", ("tiny",), clock.now)
    assert keys.list()[0].last_used == clock.now

    clock.advance(seconds=10)  # written at most once a minute
    keys.verify(created.secret)
    assert keys.list()[0].last_used == T0 + timedelta(minutes=5)
    clock.advance(minutes=1)
    keys.verify(created.secret)
    assert keys.list()[0].last_used == clock.now


@pytest.mark.parametrize("secret", [None, ""])
def test_missing_key(keys: KeyStore, secret: str | None) -> None:
    with pytest.raises(AuthenticationError, match="missing API key"):
        keys.verify(secret)


def test_unknown_keys_say_unknown_and_name_no_key(keys: KeyStore) -> None:
    created = keys.create("secret-project", models=None, expires=None)
    tampered = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    for secret in (tampered, "hth_nope", "sk-123", created.secret + "x", created.secret[:12]):
        with pytest.raises(AuthenticationError, match="unknown API key") as caught:
            keys.verify(secret)
        assert "secret-project" not in str(caught.value)
        assert created.info.prefix not in str(caught.value)


def test_revoke_takes_effect_on_the_next_verify(keys: KeyStore) -> None:
    created = keys.create("app-1", models=None, expires=None)
    keys.verify(created.secret)
    assert keys.revoke("app-1").revoked is not None
    with pytest.raises(AuthenticationError, match="API key 'app-1' has been revoked"):
        keys.verify(created.secret)
    assert keys.list()[0].status(T0) == "revoked"


def test_revoke_from_another_process_is_seen_at_once(
    keys: KeyStore, db_url: str, clock: FakeClock
) -> None:
    created = keys.create("app-1", models=None, expires=None)
    keys.verify(created.secret)
    other = create_database_engine(db_url)  # as `hearth keys revoke` would, beside the server
    try:
        KeyStore(other, clock=clock).revoke("app-1")
    finally:
        other.dispose()
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.verify(created.secret)


def test_revoke_by_prefix_is_idempotent_and_unknown_names_fail(keys: KeyStore) -> None:
    created = keys.create("app-1", models=None, expires=None)
    first = keys.revoke(created.info.prefix)
    assert first.name == "app-1"
    assert keys.revoke("app-1").revoked == first.revoked
    with pytest.raises(ValidationError, match="no API key has this name"):
        keys.revoke("app-2")


def test_expired_keys_fail_with_their_expiry(keys: KeyStore, clock: FakeClock) -> None:
    created = keys.create("temp", models=None, expires=T0 + timedelta(hours=1))
    assert keys.verify(created.secret).name == "temp"
    clock.advance(hours=1)
    with pytest.raises(AuthenticationError, match=r"'temp' expired at 2026-01-01T13:00:00\+00:00"):
        keys.verify(created.secret)
    assert keys.list()[0].status(clock.now) == "expired"


def test_any_active(keys: KeyStore, clock: FakeClock) -> None:
    assert not keys.any_active()
    keys.create("temp", models=None, expires=T0 + timedelta(minutes=1))
    assert keys.any_active()
    clock.advance(minutes=2)
    assert not keys.any_active()
    keys.create("app", models=None, expires=None)
    assert keys.any_active()
    keys.revoke("app")
    assert not keys.any_active()


def test_list_is_oldest_first_and_includes_revoked_keys(keys: KeyStore, clock: FakeClock) -> None:
    for name in ("c", "a", "b"):
        keys.create(name, models=None, expires=None)
        clock.advance(seconds=1)
    keys.revoke("a")
    listed = keys.list()
    assert [info.name for info in listed] == ["c", "a", "b"]
    assert [info.created for info in listed] == [T0 + timedelta(seconds=s) for s in range(3)]
    assert all(info.created.tzinfo is not None for info in listed)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"team": "a/b"}, "team"),
        ({"models": []}, "models"),
        ({"models": ["tiny", " "]}, "models"),
        ({"expires": T0}, "expires"),
        ({"expires": T0 - timedelta(days=1)}, "expires"),
    ],
)
def test_create_validates(keys: KeyStore, kwargs: dict[str, object], param: str) -> None:
    arguments: dict[str, object] = {"name": "ok", "models": None, "expires": None, **kwargs}
    with pytest.raises(ValidationError) as caught:
        keys.create(**arguments)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert keys.list() == []


def test_names_are_unique_even_after_revocation(keys: KeyStore) -> None:
    keys.create("app-1", models=None, expires=None)
    keys.revoke("app-1")
    with pytest.raises(ValidationError, match="exists"):
        keys.create("app-1", models=None, expires=None)
    assert len(keys.list()) == 1


def test_naive_expiry_is_utc(keys: KeyStore) -> None:
    info = keys.create("app", models=None, expires=datetime(2027, 1, 1)).info
    assert info.expires == datetime(2027, 1, 1, tzinfo=UTC)


def test_check_model(keys: KeyStore) -> None:
    scoped = keys.create("scoped", models=["tiny", "gemma3:*"], expires=None).info
    keys.check_model(scoped, "tiny:latest")
    keys.check_model(scoped, "tiny")
    keys.check_model(scoped, "gemma3:270m")
    with pytest.raises(PermissionDeniedError, match="'scoped' may not use model 'other'"):
        keys.check_model(scoped, "other")
    everything = keys.create("all", models=None, expires=None).info
    keys.check_model(everything, "anything:at-all")


@pytest.mark.parametrize(
    ("allowed", "model", "ok"),
    [
        (None, "x", True),
        (["tiny"], "tiny:latest", True),
        (["tiny:latest"], "tiny", True),
        (["tiny:v2"], "tiny", False),
        (["hf.co/org/*"], "hf.co/org/repo:Q4_K_M", True),
        (["hf.co/org/*"], "hf.co/other/repo:Q4_K_M", False),
        (["team/bot"], "team/bot:latest", True),
        (["Not A Name"], "Not A Name", True),
    ],
)
def test_model_allowed(allowed: list[str] | None, model: str, ok: bool) -> None:
    assert model_allowed(allowed, model) is ok


def test_errors_are_top_level_hearth_errors() -> None:
    for error in (AuthenticationError, PermissionDeniedError):
        assert error.__mro__[1] is HearthError


@pytest.fixture
def second_engine(db_url: str) -> Iterator[Engine]:
    engine = create_database_engine(db_url)
    yield engine
    engine.dispose()


def test_concurrent_writers_from_several_engines(
    keys: KeyStore, db_engine: Engine, second_engine: Engine
) -> None:
    """Two 'processes' (engines) creating and using keys at once: nobody sees 'locked'."""
    errors: list[BaseException] = []

    def work(engine: Engine, worker: int) -> None:
        store = KeyStore(engine)
        try:
            for i in range(10):
                created = store.create(f"w{worker}-{i}", models=None, expires=None)
                store.verify(created.secret)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=(engine, n))
        for n, engine in enumerate([db_engine, second_engine] * 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(keys.list()) == 40


def test_processes_starting_together_create_the_tables_once(
    db_url: str, db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hearth serve` and `hearth keys create` starting at once (here: six engines at a barrier)
    race to create the tables. PostgreSQL needs no retry: creators wait on an advisory lock."""
    if db_engine.dialect.name == "postgresql":
        monkeypatch.setattr(hearth.db, "_CREATE_ATTEMPTS", 1)
    engines = [create_database_engine(db_url) for _ in range(6)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(n: int, engine: Engine) -> None:
        try:
            barrier.wait()
            if n % 2:
                KeyStore(engine).list()
            else:
                with UsageLog(engine) as usage:
                    usage.summary(group_by="key")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=item) for item in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []


def test_database_url_setting() -> None:
    default = Settings.from_env({"HEARTH_HOME": "/srv/hearth"})
    assert default.database_url == ""
    assert default.effective_database_url == "sqlite:////srv/hearth/hearth.db"
    url = "postgresql+psycopg://u:p@db/hearth"
    assert Settings.from_env({"HEARTH_DATABASE_URL": url}).effective_database_url == url


def test_bad_database_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        create_database_engine("nonsense")
    with pytest.raises(ConfigError, match="no driver"):
        create_database_engine("nosuchdb://x/y")
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match="in-memory SQLite is not supported"):
            create_database_engine(memory)


def test_sqlite_uses_wal_and_waits_for_locks(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
