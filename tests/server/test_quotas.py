"""Rate limits, quotas and budgets through a real server and the official openai client, on
SQLite and on PostgreSQL, and the key and team limits stored on both."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, text

from hearth.config import Settings
from hearth.db import open_database, utcnow
from hearth.errors import ValidationError
from hearth.governance.limits import Limits
from hearth.governance.store import TeamStore
from hearth.modelfile import parse_modelfile
from hearth.modelfile.create import create_model
from hearth.server.app import create_app
from hearth.server.keys import KeyStore
from hearth.server.quotas import Quotas
from hearth.server.usage import UsageLog, UsageRecord
from hearth.store import Store

MODEL = "tiny-chat:latest"
MESSAGES: Any = [{"role": "user", "content": "hi"}]
NO_EOS = {"2": -100}  # the tiny model's </s>: answers run to max_tokens
HARDWARE = "[hardware]\ncost_per_hour = 3600\ncurrency = 'USD'\n"  # 1 USD a busy second


@contextmanager
def serve(settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """Like tests.server.live_server, but the test also gets the app (to read its limiter)."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path, server_database_url: str
) -> Settings:
    """A server home on SQLite, then on a fresh PostgreSQL database (server_database_url)."""
    home = tmp_path_factory.mktemp("quota-home")
    (home / "hearth.toml").write_text(HARDWARE)
    settings = Settings.from_env(
        {
            "HEARTH_HOME": str(home),
            "HEARTH_CONTEXT": "1024",
            "HEARTH_MAX_SEQS": "4",
            "HEARTH_CACHE_SEQS": "0",
            "HEARTH_THREADS": "2",
            "HEARTH_DATABASE_URL": server_database_url,
        }
    )
    store = Store(settings)
    store.import_gguf(tiny_chat_model, "tiny-chat")
    recipe = parse_modelfile("FROM tiny-chat\nPARAMETER num_predict 400\n", home)
    create_model(store, "wordy", recipe)
    # Measured work the money budget is priced on: 1,000 tokens in one busy second.
    engine = open_database(settings)
    with UsageLog(engine) as log:
        end = utcnow() - timedelta(hours=1)
        log.record(
            UsageRecord(
                request_id="seed",
                key_name=None,
                model=MODEL,
                endpoint="/v1/chat/completions",
                prompt_tokens=500,
                completion_tokens=500,
                duration_ms=1000.0,
                created=end,
            )
        )
    engine.dispose()
    return settings


@pytest.fixture(scope="module")
def database(settings: Settings) -> Iterator[Engine]:
    engine = open_database(settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def keys(database: Engine) -> KeyStore:
    return KeyStore(database)


@pytest.fixture(scope="module")
def teams(database: Engine) -> TeamStore:
    return TeamStore(database)


@pytest.fixture(scope="module")
def server(settings: Settings, keys: KeyStore) -> Iterator[tuple[str, FastAPI]]:
    keys.create("probe", models=None, expires=None)  # keys are required from here on
    with serve(settings) as running:
        yield running


@pytest.fixture(scope="module")
def base_url(server: tuple[str, FastAPI]) -> str:
    return server[0]


@pytest.fixture(scope="module")
def prompt_tokens(base_url: str, keys: KeyStore) -> int:
    """How many tokens MESSAGES take through the tiny model's chat template."""
    secret = keys.create("prompt-probe", models=None, expires=None).secret
    reply = chat(base_url, secret, max_tokens=1)
    assert reply.usage is not None
    return int(reply.usage.prompt_tokens)


def client(base_url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=secret, max_retries=0)


def chat(base_url: str, secret: str, max_tokens: int) -> Any:
    with client(base_url, secret) as openai_client:
        return openai_client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=max_tokens, logit_bias=NO_EOS
        )


def new_key(keys: KeyStore, name: str, team: str | None = None, **limits: Any) -> str:
    return keys.create(name, models=None, expires=None, team=team, limits=Limits(**limits)).secret


def test_requests_over_rpm_get_429_with_retry_after(base_url: str, keys: KeyStore) -> None:
    secret = new_key(keys, "rpm-2", rpm=2)
    chat(base_url, secret, 1)
    chat(base_url, secret, 1)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(base_url, secret, 1)
    assert "API key 'rpm-2' is over its limit of 2 requests per minute" in str(refused.value)
    assert 50 <= int(refused.value.response.headers["retry-after"]) <= 60
    body = refused.value.response.json()["error"]
    assert body["type"] == "rate_limit_error" and body["code"] == "rate_limit_exceeded"


def test_tokens_per_minute(base_url: str, keys: KeyStore, prompt_tokens: int) -> None:
    secret = new_key(keys, "tpm", tpm=prompt_tokens * 2 + 20)
    chat(base_url, secret, 10)
    with pytest.raises(openai.RateLimitError, match="tokens per minute") as refused:
        chat(base_url, secret, prompt_tokens + 10)
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60


def test_a_daily_quota_cuts_the_answer_at_the_limit_then_refuses(
    base_url: str, keys: KeyStore, prompt_tokens: int
) -> None:
    secret = new_key(keys, "daily", daily_tokens=prompt_tokens + 10)
    reply = chat(base_url, secret, 50)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 10  # the quota's last tokens, and not one more
    with pytest.raises(openai.RateLimitError, match="daily quota of") as refused:
        chat(base_url, secret, 5)
    retry = int(refused.value.response.headers["retry-after"])
    assert 0 < retry <= 86_400  # until midnight UTC
    assert "resets" in str(refused.value)


def test_a_model_default_cannot_undo_the_cut(
    base_url: str, keys: KeyStore, prompt_tokens: int
) -> None:
    secret = new_key(keys, "wordy-user", daily_tokens=prompt_tokens + 7)
    with client(base_url, secret) as openai_client:
        reply = openai_client.chat.completions.create(
            model="wordy", messages=MESSAGES, logit_bias=NO_EOS
        )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 7  # not num_predict's 400


def test_a_monthly_quota_answers_in_each_api_shape(
    base_url: str, keys: KeyStore, prompt_tokens: int
) -> None:
    secret = new_key(keys, "monthly", monthly_tokens=prompt_tokens + 3)
    chat(base_url, secret, 50)
    headers = {"Authorization": f"Bearer {secret}"}
    anthropic = httpx.post(
        f"{base_url}/v1/messages",
        headers=headers,
        json={"model": MODEL, "max_tokens": 5, "messages": MESSAGES},
    )
    assert anthropic.status_code == 429 and int(anthropic.headers["retry-after"]) > 0
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "rate_limit_error"
    assert "monthly quota" in anthropic.json()["error"]["message"]
    ollama = httpx.post(
        f"{base_url}/api/chat",
        headers=headers,
        json={"model": MODEL, "messages": MESSAGES, "stream": False},
    )
    assert ollama.status_code == 429 and "retry-after" in ollama.headers
    assert "monthly quota" in ollama.json()["error"]


def test_concurrent_streams_are_limited(base_url: str, keys: KeyStore) -> None:
    secret = new_key(keys, "one-stream", concurrent=1)
    with client(base_url, secret) as openai_client:
        stream = openai_client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=800, logit_bias=NO_EOS, stream=True
        )
        next(iter(stream))
        with pytest.raises(openai.RateLimitError, match="1 concurrent generations"):
            chat(base_url, secret, 1)
        stream.close()
    deadline = time.monotonic() + 10
    while True:  # the slot frees when the server notices the client left
        try:
            chat(base_url, secret, 1)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_racing_requests_never_overshoot_the_last_tokens(
    base_url: str, keys: KeyStore, prompt_tokens: int
) -> None:
    quota = 8 * (prompt_tokens + 20)
    secret = new_key(keys, "racers", monthly_tokens=quota)
    used: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()

    def racer() -> None:
        while True:
            try:
                reply = chat(base_url, secret, 20)
            except openai.RateLimitError as error:
                with lock:
                    refused.append(str(error))
                return
            with lock:
                used.append(reply.usage.total_tokens)

    threads = [threading.Thread(target=racer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 6 and all("monthly quota" in message for message in refused)
    assert sum(used) <= quota  # reservations are atomic: no overshoot at all
    assert sum(used) > quota - (prompt_tokens + 20)  # and the quota was used up


def test_a_stream_cut_short_counts_its_real_tokens(
    server: tuple[str, FastAPI], keys: KeyStore, database: Engine
) -> None:
    base_url, app = server
    secret = new_key(keys, "leaver", monthly_tokens=1_000_000)
    with client(base_url, secret) as openai_client:
        stream = openai_client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=900, logit_bias=NO_EOS, stream=True
        )
        chunks = iter(stream)
        for _ in range(3):
            next(chunks)
        stream.close()
    quotas: Quotas = app.state.quotas
    subject = quotas.subjects(keys.verify(secret))[0]
    deadline = time.monotonic() + 10
    while True:  # until the server has noticed the client left and written the usage row
        app.state.usage.flush()
        with UsageLog(database) as log:
            rows = [row for row in log.summary() if row.group == "leaver"]
        counted = quotas.limiter.used(subject)
        if rows and counted["in_flight"] == 0 and counted["tokens_month"] > 0:
            break
        assert time.monotonic() < deadline, (rows, counted)
        time.sleep(0.05)
    assert rows[0].aborted == 1
    assert counted["tokens_month"] == rows[0].total_tokens  # what the usage row says
    assert counted["reserved_tokens"] == 0
    assert rows[0].completion_tokens < 900  # not the reservation's worst case


def test_team_limits_are_shared_by_its_keys(
    base_url: str, keys: KeyStore, teams: TeamStore, prompt_tokens: int
) -> None:
    teams.create("search", Limits(daily_tokens=2 * prompt_tokens + 10))
    first = new_key(keys, "search-1", team="search")
    second = new_key(keys, "search-2", team="search", rpm=100)
    chat(base_url, first, 5)
    reply = chat(base_url, second, 50)
    assert reply.usage.completion_tokens == 5  # the team's last 5 tokens
    for secret in (first, second):
        with pytest.raises(openai.RateLimitError, match="team 'search' has used its daily"):
            chat(base_url, secret, 1)
    other = new_key(keys, "not-search")
    chat(base_url, other, 1)  # other keys are not affected


def test_a_team_budget_in_money(
    server: tuple[str, FastAPI], keys: KeyStore, teams: TeamStore, prompt_tokens: int
) -> None:
    base_url, app = server
    teams.create("budgeted", Limits(monthly_budget=1000.0))
    secret = new_key(keys, "spender", team="budgeted")
    quotas: Quotas = app.state.quotas
    quotas.subjects(keys.verify(secret))  # measures the model's cost per token
    rate = quotas.rate(MODEL)  # 1 USD a busy second over the tokens done in that time
    assert rate > 0
    teams.set("budgeted", Limits(monthly_budget=(prompt_tokens + 8.5) * rate))
    reply = chat(base_url, secret, 50)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens <= 8
    with pytest.raises(openai.RateLimitError, match="monthly budget of") as refused:
        chat(base_url, secret, 1)
    assert refused.value.response.json()["error"]["code"] == "rate_limit_exceeded"


def test_keys_without_limits_are_not_limited(base_url: str, keys: KeyStore) -> None:
    secret = new_key(keys, "free")
    for _ in range(3):
        chat(base_url, secret, 2)


def test_limits_and_teams_are_stored(db_engine: Engine) -> None:
    keys, teams = KeyStore(db_engine), TeamStore(db_engine)
    limits = Limits(rpm=60, tpm=20_000, monthly_tokens=2_000_000, concurrent=4)
    keys.create("app-1", models=None, expires=None, team="a", limits=limits)
    assert keys.list()[0].limits == limits
    changed = keys.set_limits("app-1", Limits(daily_tokens=5000), frozenset({"rpm"}))
    assert changed.limits == Limits(
        tpm=20_000, daily_tokens=5000, monthly_tokens=2_000_000, concurrent=4
    )
    teams.create("a", Limits(monthly_budget=50.0, monthly_tokens=10**10))
    assert teams.set("a", Limits(rpm=10)).limits == Limits(
        rpm=10, monthly_tokens=10**10, monthly_budget=50.0
    )
    assert [team.name for team in teams.list()] == ["a"]
    with pytest.raises(ValidationError, match="exists"):
        teams.create("a", Limits())
    with pytest.raises(ValidationError, match="no team"):
        teams.set("b", Limits(rpm=1))
    with pytest.raises(ValidationError, match="must be positive"):
        teams.create("c", Limits(rpm=0))


def test_an_older_keys_table_gets_the_limit_columns(db_engine: Engine) -> None:
    serial = "SERIAL" if db_engine.dialect.name == "postgresql" else "INTEGER"
    with db_engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE api_keys (id {serial} PRIMARY KEY, name VARCHAR(64) UNIQUE,"
                " prefix VARCHAR(16), secret_hash VARCHAR(64), models JSON, team VARCHAR(64),"
                " created TIMESTAMP, expires TIMESTAMP, revoked TIMESTAMP, last_used TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_keys (name, prefix, secret_hash, created)"
                " VALUES ('old', 'hth_oldoldol', 'x', '2026-01-01 00:00:00')"
            )
        )
    keys = KeyStore(db_engine)
    assert keys.list()[0].limits == Limits()  # the old key: no limits
    keys.create("new", models=None, expires=None, limits=Limits(rpm=5))
    assert KeyStore(db_engine).list()[1].limits == Limits(rpm=5)
