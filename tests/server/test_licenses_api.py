"""`GET /api/licenses`, `POST /api/licenses/accept`, the `license` field of `/v1/models`, and
serving's refusal of a denied model, through a real server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.db import open_database
from hearth.license.acceptance import AcceptanceLog
from hearth.server.keys import KeyStore
from hearth.store import Store
from tests.license.licensed_gguf import write_licensed_gguf
from tests.server.live_server import live_server, server_settings

POLICY = """
[policy]
commercial_use = true
monthly_active_users = 50000
intended_uses = ["customer_facing"]
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Path:
    home = tmp_path_factory.mktemp("licenses-home")
    files = tmp_path_factory.mktemp("licensed")
    store = Store(Settings.from_env({"HEARTH_HOME": str(home)}))
    store.import_gguf(tiny_chat_model, "open-chat")  # apache-2.0
    store.import_gguf(write_licensed_gguf(files / "llama.gguf", "llama3.1"), "acme/llama-bot")
    store.import_gguf(write_licensed_gguf(files / "nc.gguf", "cc-by-nc-4.0"), "acme/nc")
    store.import_gguf(write_licensed_gguf(files / "eula.gguf", "acme-eula"), "acme/eula")
    (home / "hearth.toml").write_text(POLICY)
    return home


@pytest.fixture(scope="module")
def base_url(home: Path) -> Iterator[str]:
    with live_server(server_settings(home)) as url:
        yield url


def by_model(body: dict[str, object]) -> dict[str, dict[str, object]]:
    return {entry["model"]: entry for entry in body["models"]}  # type: ignore[attr-defined,index]


def test_api_licenses_lists_every_model_with_its_decision(base_url: str) -> None:
    response = httpx.get(f"{base_url}/api/licenses")
    assert response.status_code == 200
    body = response.json()
    assert body["policy"]["declared"] is True
    assert body["policy"]["intended_uses"] == ["customer_facing"]
    assert len(body["catalogue"]) == 22
    models = by_model(body)
    llama = models["acme/llama-bot:latest"]
    assert llama["license"]["id"] == "llama3.1"
    assert llama["decision"] == "allowed with obligations"
    assert llama["attribution"] == "Built with Llama"
    assert {o["clause"] for o in llama["obligations"]} == {"§1.b.i", "§1.b.iv"}
    assert llama["evidence"][0]["source"] in ("config license_id", "gguf general.license")
    assert models["open-chat:latest"]["decision"] == "allowed"
    nc = models["acme/nc:latest"]
    assert nc["decision"] == "denied" and nc["clause"] == "§1(i), §2(a)(1)"
    eula = models["acme/eula:latest"]
    assert eula["decision"] == "needs review"
    assert eula["license"]["unknown_ids"] == ["acme-eula"]

    one = httpx.get(f"{base_url}/api/licenses", params={"model": "acme/nc"}).json()
    assert [m["model"] for m in one["models"]] == ["acme/nc:latest"]


def test_v1_models_carries_the_attribution(base_url: str) -> None:
    cards = {card["id"]: card for card in httpx.get(f"{base_url}/v1/models").json()["data"]}
    llama = cards["acme/llama-bot:latest"]["license"]
    assert llama["attribution"] == "Built with Llama"
    assert llama["id"] == "llama3.1" and llama["decision"] == "allowed with obligations"
    assert cards["open-chat:latest"]["license"]["attribution"] is None
    single = httpx.get(f"{base_url}/v1/models/acme/llama-bot:latest").json()
    assert single["license"]["attribution"] == "Built with Llama"
    assert single["object"] == "model"  # the OpenAI fields are unchanged


def test_a_denied_model_is_refused_before_loading(base_url: str) -> None:
    chat = {"model": "acme/nc", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    refused = httpx.post(f"{base_url}/v1/chat/completions", json=chat, timeout=30)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["type"] == "permission_error"
    assert "denied: commercial use not permitted (§1(i), §2(a)(1))" in error["message"]
    ollama = httpx.post(
        f"{base_url}/api/generate", json={"model": "acme/nc", "prompt": "hi"}, timeout=30
    )
    assert ollama.status_code == 403
    assert httpx.get(f"{base_url}/api/ps").json()["models"] == []  # never loaded

    # A model that needs review is served (review is for people); an allowed one too.
    for name in ("acme/eula", "open-chat"):
        allowed = httpx.post(f"{base_url}/v1/chat/completions", json=chat | {"model": name})
        assert allowed.status_code == 200, allowed.text


def test_accepting_through_the_api_records_the_key_name(home: Path, base_url: str) -> None:
    engine = open_database(server_settings(home))
    keys = KeyStore(engine)
    try:
        secret = keys.create("legal-team", models=None, expires=None).secret
        response = httpx.post(
            f"{base_url}/api/licenses/accept",
            json={"model": "acme/eula"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["decision"] == "allowed with obligations"
        assert body["accepted"]["who"] == "legal-team"
        [record] = AcceptanceLog(home).all()
        assert record.who == "legal-team" and record.model == "acme/eula:latest"
        assert record.text_digest.startswith("sha256:")
    finally:
        engine.dispose()
