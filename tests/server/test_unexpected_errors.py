"""A bug inside a route answers with the API's own error object (never plain text, never the
exception's message), on the OpenAI, Ollama and Anthropic paths alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hearth.config import Settings
from hearth.server.app import create_app

SECRET = "internal detail that must not reach the client"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(Settings.from_env({"HEARTH_HOME": str(tmp_path)}))
    for path in ("/v1/broken", "/api/broken", "/v1/messages/broken"):

        @app.get(path)
        async def broken() -> None:
            raise RuntimeError(SECRET)

    return TestClient(app, base_url="http://localhost", raise_server_exceptions=False)


def test_openai_path_gets_an_error_object(client: TestClient) -> None:
    response = client.get("/v1/broken")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert SECRET not in response.text


def test_ollama_path_gets_its_error_shape(client: TestClient) -> None:
    response = client.get("/api/broken")
    assert response.status_code == 500
    assert set(response.json()) == {"error"} and SECRET not in response.text


def test_anthropic_path_gets_its_error_shape(client: TestClient) -> None:
    response = client.get("/v1/messages/broken")
    assert response.status_code == 500
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "api_error"
    assert SECRET not in response.text
