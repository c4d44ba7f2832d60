"""A real server with the dashboard, a tiny chat model (and a copy under an odd but valid
name), an admin key and an ordinary key; every module gets its own HEARTH_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.db import open_database
from hearth.server.keys import KeyStore
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

CHAT_MODEL = "tiny-chat:latest"
ODD_MODEL = "x_-odd.name_-:v1.0-rc_x"  # valid, but full of characters a template might mangle


@dataclass(frozen=True)
class Dashboard:
    url: str
    admin_secret: str
    user_secret: str
    settings: Settings
    keys: KeyStore


@pytest.fixture(scope="module")
def dashboard(
    tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path
) -> Iterator[Dashboard]:
    settings = server_settings(tmp_path_factory.mktemp("ui-home"))
    store = Store(settings)
    store.import_gguf(tiny_chat_model, "tiny-chat")
    store.copy("tiny-chat", ODD_MODEL)
    engine = open_database(settings)
    keys = KeyStore(engine)
    admin = keys.create("root-admin", models=None, expires=None, admin=True).secret
    user = keys.create("app-user", models=None, expires=None, team="search").secret
    try:
        with live_server(settings) as url:
            yield Dashboard(url, admin, user, settings, keys)
    finally:
        engine.dispose()


@contextmanager
def login(dashboard: Dashboard, secret: str | None = None) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client holding a session cookie, and the session's CSRF token."""
    with httpx.Client(base_url=dashboard.url, headers={"origin": dashboard.url}) as client:
        answer = client.post("/ui/api/login", json={"key": secret or dashboard.admin_secret})
        assert answer.status_code == 200, answer.text
        yield client, answer.json()["csrf"]
