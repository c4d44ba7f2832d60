"""Deleting a model a running server has loaded: through /api/delete, and with `hearth rm`.

The server unloads an idle model and then deletes it; a model that requests are using is not
deleted (409, with a message), and unloads once they finish. `hearth rm` in another process is
allowed: on Linux the server keeps its mapping of the deleted file, so requests in flight finish
normally, and new requests for the name get 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.store import Store
from tests.cli.process import run_hearth
from tests.server.live_server import live_server, server_settings

GREEDY = SamplingParams(temperature=0, max_tokens=4)


@pytest.fixture
def server(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[str, ModelManager, Path]]:
    home = tmp_path / "home"
    settings = server_settings(home)
    Store(settings).import_gguf(tiny_model, "tiny")
    with ModelManager(Store(settings), settings) as manager, live_server(settings, manager) as url:
        yield url, manager, home


def generate(client: httpx.Client) -> httpx.Response:
    body = {"model": "tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    return client.post("/api/generate", json=body)


def delete(client: httpx.Client) -> httpx.Response:
    return client.request("DELETE", "/api/delete", json={"model": "tiny"})


def test_delete_unloads_an_idle_model_first(server: tuple[str, ModelManager, Path]) -> None:
    url, manager, home = server
    with httpx.Client(base_url=url, timeout=60) as client:
        assert generate(client).status_code == 200
        assert [m["name"] for m in client.get("/api/ps").json()["models"]] == ["tiny:latest"]
        response = delete(client)
        assert response.status_code == 200, response.text
        assert client.get("/api/ps").json()["models"] == []
        assert client.get("/api/tags").json()["models"] == []
        assert generate(client).status_code == 404
    assert manager.loaded() == []
    assert list((home / "blobs").iterdir()) == []


def test_delete_of_a_model_in_use_is_refused_then_allowed(
    server: tuple[str, ModelManager, Path],
) -> None:
    url, manager, _ = server
    with httpx.Client(base_url=url, timeout=60) as client:
        with manager.acquire("tiny") as llm:  # a request in flight
            response = delete(client)
            assert response.status_code == 409
            assert response.json()["error"] == (
                "tiny is in use by 1 request(s) and was not deleted; it unloads when they "
                "finish, then delete it again"
            )
            assert [m["name"] for m in client.get("/api/tags").json()["models"]] == ["tiny:latest"]
            assert len(list(llm.complete("still works", GREEDY))) >= 1
        assert manager.loaded() == []  # the refused delete asked for an unload once idle
        assert delete(client).status_code == 200
        assert client.get("/api/tags").json()["models"] == []


def test_cli_rm_of_a_model_the_server_is_using(server: tuple[str, ModelManager, Path]) -> None:
    url, manager, home = server
    with httpx.Client(base_url=url, timeout=60) as client:
        with manager.acquire("tiny") as llm:
            result = run_hearth(home, "rm", "tiny")
            assert (result.returncode, result.stdout.strip()) == (0, "deleted tiny (2 blobs freed)")
            assert list((home / "blobs").iterdir()) == []
            # The loaded model keeps its mapping of the deleted file and still answers.
            assert len(list(llm.complete("after rm", GREEDY))) >= 1
        response = generate(client)
        assert response.status_code == 404 and "not found" in response.json()["error"]
        assert client.get("/health").status_code == 200
