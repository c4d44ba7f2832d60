"""/v1/embeddings and /api/embed with the real all-MiniLM-L6-v2, through the official clients."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import ollama
import openai
import pytest

from hearth.config import Settings
from hearth.engine.embeddings import Embedder
from hearth.store import Store
from tests.server.live_server import live_server

pytestmark = pytest.mark.models
MODEL = "all-minilm:l6-v2"
TEXTS = [
    "The cat sits on the mat.",
    "Un chat est assis sur le tapis.",
    "Quarterly revenue grew 4%.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[list[float]]]]:
    settings = Settings.from_env({"HEARTH_HOME": str(tmp_path_factory.mktemp("embed-home"))})
    local = Store(settings).pull(MODEL)
    with Embedder(local.model_path) as embedder:
        reference = embedder.embed(TEXTS)
    with live_server(settings) as url:
        yield url, reference


def test_openai_embeddings(server: tuple[str, list[list[float]]]) -> None:
    url, reference = server
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        result = client.embeddings.create(model=MODEL, input=TEXTS)
        assert [d.index for d in result.data] == [0, 1, 2]
        got = np.array([d.embedding for d in result.data])
        assert got.shape == (3, 384)
        assert np.allclose(got, np.array(reference), atol=1e-6)
        assert result.usage.prompt_tokens > 10
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="no-such-embedder", input="x")


def test_ollama_embed(server: tuple[str, list[list[float]]]) -> None:
    url, reference = server
    with ollama.Client(host=url) as client:
        result = client.embed(model=MODEL, input=TEXTS[0])
        assert np.allclose(np.array(result.embeddings[0]), np.array(reference[0]), atol=1e-6)


def test_embeddings_are_counted_like_generations(server: tuple[str, list[list[float]]]) -> None:
    url, _ = server
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        tokens = client.embeddings.create(model=MODEL, input=TEXTS).usage.prompt_tokens
    with ollama.Client(host=url) as client:
        client.embed(model=MODEL, input=TEXTS[0])
    metrics = httpx.get(f"{url}/metrics").text
    for endpoint in ("/v1/embeddings", "/api/embed"):
        line = f'hearth_requests_total{{endpoint="{endpoint}",model="{MODEL}",status="ok"}}'
        assert line in metrics
    assert f'hearth_prompt_tokens_total{{model="{MODEL}"}}' in metrics
    assert tokens > 0
