"""API keys and usage records through a real server and the official openai client, on SQLite
and on PostgreSQL (``server_database_url``: each module run gets a fresh database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.config import Settings
from hearth.db import open_database
from hearth.server.keys import KeyStore
from hearth.server.usage import UsageLog
from hearth.store import Store
from tests.server.live_server import live_server

CHAT = "tiny-chat:latest"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path, server_database_url: str
) -> Settings:
    settings = Settings.from_env(
        {
            "HEARTH_HOME": str(tmp_path_factory.mktemp("auth-home")),
            "HEARTH_CONTEXT": "1024",
            "HEARTH_MAX_SEQS": "2",
            "HEARTH_CACHE_SEQS": "0",
            "HEARTH_DATABASE_URL": server_database_url,
        }
    )
    store = Store(settings)
    store.import_gguf(tiny_chat_model, "tiny-chat")
    store.copy("tiny-chat", "other")
    return settings


@pytest.fixture(scope="module")
def keys(settings: Settings) -> Iterator[KeyStore]:
    engine = open_database(settings)
    yield KeyStore(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def base_url(settings: Settings, keys: KeyStore) -> Iterator[str]:
    with live_server(settings) as url:
        yield url


def client(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def test_without_keys_everything_is_open_then_a_key_closes_it(
    base_url: str, keys: KeyStore
) -> None:
    assert httpx.get(f"{base_url}/v1/models").status_code == 200
    secret = keys.create("app-1", models=["tiny-chat"], expires=None).secret
    refused = httpx.get(f"{base_url}/v1/models")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{base_url}/metrics").status_code == 401
    assert httpx.get(f"{base_url}/health").status_code == 200
    with client(base_url, secret) as good:
        answer = good.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
        assert answer.usage is not None and answer.usage.completion_tokens == 3
        with pytest.raises(openai.PermissionDeniedError):
            good.chat.completions.create(model="other", messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
    with client(base_url, "hth_wrong") as wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert httpx.get(f"{base_url}/v1/models", headers={"x-api-key": secret}).status_code == 200
    keys.revoke("app-1")
    with (
        client(base_url, secret) as revoked,
        pytest.raises(openai.AuthenticationError, match="revoked"),
    ):
        revoked.models.list()


def test_every_request_writes_a_usage_row_even_when_cut_short(
    base_url: str, keys: KeyStore, settings: Settings
) -> None:
    secret = keys.create("app-2", models=None, expires=None).secret
    headers = {"authorization": f"Bearer {secret}"}
    with client(base_url, secret) as good:
        good.completions.create(model=CHAT, prompt="count", max_tokens=4)
    body = {"model": CHAT, "prompt": "long", "max_tokens": 900, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body, headers=headers) as response:
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    engine = open_database(settings)
    log = UsageLog(engine)
    try:
        deadline = time.monotonic() + 10
        rows = []
        while time.monotonic() < deadline:
            rows = [r for r in log.summary(group_by="key") if r.group == "app-2"]
            if rows and rows[0].requests == 2:
                break
            time.sleep(0.1)
        assert rows and rows[0].requests == 2
        assert rows[0].aborted == 1
        assert rows[0].completion_tokens >= 4 + 1  # the cut stream's tokens count too
    finally:
        log.close()
        engine.dispose()
    assert _hearth_usage(settings)["app-2"][:3] == ["2", "0", "1"]  # requests, errors, aborted
    assert (settings.home / "hearth.db").exists() == (settings.database_url == "")


def _hearth_usage(settings: Settings) -> dict[str, list[str]]:
    """`hearth usage` (by key) on the server's database: the cells of each key's row."""
    env = {"HEARTH_HOME": str(settings.home), "HEARTH_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(app, ["usage"], env=env)
    assert result.exit_code == 0, result.output
    return {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
