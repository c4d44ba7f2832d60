"""API keys do not share cached prefixes: a prompt another key sent is computed afresh (no
timing signal about other tenants' prompts), while a key's own repeat reuses its cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from hearth.config import Settings
from hearth.db import open_database
from hearth.server.keys import KeyStore
from hearth.store import Store
from tests.server.live_server import live_server

PROMPT = "The same long question, asked word for word by two different teams of the company: "


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path
) -> Iterator[tuple[str, str, str]]:
    settings = Settings.from_env(
        {
            "HEARTH_HOME": str(tmp_path_factory.mktemp("tenancy-home")),
            "HEARTH_CONTEXT": "512",
            "HEARTH_MAX_SEQS": "2",
            "HEARTH_CACHE_SEQS": "4",
        }
    )
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    engine = open_database(settings)
    keys = KeyStore(engine)
    first = keys.create("team-a", models=None, expires=None).secret
    second = keys.create("team-b", models=None, expires=None).secret
    with live_server(settings) as url:
        yield url, first, second
    engine.dispose()


def cached_tokens(url: str, key: str) -> int:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    answer = client.completions.create(
        model="tiny-chat", prompt=PROMPT * 3, max_tokens=2, temperature=0
    )
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    return answer.usage.prompt_tokens_details.cached_tokens or 0


def test_keys_do_not_share_cached_prefixes(served: tuple[str, str, str]) -> None:
    url, first, second = served
    assert cached_tokens(url, first) == 0
    assert cached_tokens(url, first) > 0  # the same key reuses its own prefix
    assert cached_tokens(url, second) == 0  # another key's identical prompt: computed afresh
    assert cached_tokens(url, second) > 0
