"""/api/create and /api/blobs through the official `ollama` client, and the created model's
profile applied on both APIs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from hearth.devtools.tiny_gguf import write_tiny_lora
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

BASE = "tiny-chat:latest"
NO_EOS = {"2": -100}  # the tiny model's </s>, so answers run to their length limit


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    settings = server_settings(tmp_path_factory.mktemp("create-home"))
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=base_url) as client:
        yield client


def _prompt_tokens(client: ollama.Client, model: str) -> int:
    reply = client.chat(
        model=model, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 1}
    )
    return reply.prompt_eval_count or 0


def test_create_from_a_base_with_system_and_parameters(
    client: ollama.Client, base_url: str
) -> None:
    updates = list(
        client.create(
            model="helper",
            from_=BASE,
            system="You help.",
            parameters={"num_predict": 2, "temperature": 0},
            messages=[{"role": "user", "content": "Earlier"}],
            license="Custom license",
            stream=True,
        )
    )
    assert updates[-1].status == "success"
    shown = client.show("helper")
    assert shown.parameters is not None and "num_predict 2" in shown.parameters
    assert shown.modelfile is not None and 'SYSTEM """You help."""' in shown.modelfile
    assert shown.license is not None and "Custom license" in shown.license
    raw = httpx.post(f"{base_url}/api/show", json={"model": "helper"}).json()
    assert raw["system"] == "You help."
    assert raw["messages"] == [{"role": "user", "content": "Earlier"}]
    # The system prompt and the leading message are in the prompt; num_predict is the default.
    assert _prompt_tokens(client, "helper") > _prompt_tokens(client, BASE) + len("You help.")
    answer = client.generate(model="helper", prompt="x", options={"temperature": 0})
    assert answer.eval_count == 2
    longer = client.generate(model="helper", prompt="x", options={"num_predict": 4})
    assert longer.eval_count == 4


def test_openai_requests_get_the_models_defaults(client: ollama.Client, base_url: str) -> None:
    client.create(model="three", from_=BASE, parameters={"num_predict": 3})
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused") as api:
        reply = api.chat.completions.create(
            model="three", messages=[{"role": "user", "content": "x"}], logit_bias=NO_EOS
        )
        assert reply.usage is not None and reply.usage.completion_tokens == 3
        chosen = api.chat.completions.create(
            model="three",
            messages=[{"role": "user", "content": "x"}],
            max_tokens=5,
            logit_bias=NO_EOS,
        )
        assert chosen.usage is not None and chosen.usage.completion_tokens == 5


def test_uploaded_gguf_and_adapter(
    client: ollama.Client, base_url: str, tiny_chat_model: Path, tmp_path: Path
) -> None:
    adapter = write_tiny_lora(tmp_path / "lora.gguf")
    model_digest = client.create_blob(tiny_chat_model)
    adapter_digest = client.create_blob(adapter)
    assert httpx.head(f"{base_url}/api/blobs/{adapter_digest}").status_code == 200
    client.create(
        model="adapted",
        files={"tiny-chat.gguf": model_digest},
        adapters={"lora.gguf": adapter_digest},
    )
    plain = client.generate(
        model=BASE, prompt="same prompt", options={"temperature": 0, "num_predict": 8}
    )
    adapted = client.generate(
        model="adapted", prompt="same prompt", options={"temperature": 0, "num_predict": 8}
    )
    assert adapted.response != plain.response


def test_legacy_modelfile_field(base_url: str, client: ollama.Client) -> None:
    reply = httpx.post(
        f"{base_url}/api/create",
        json={"name": "legacy", "modelfile": f"FROM {BASE}\nSYSTEM Old style.\n", "stream": False},
    )
    assert reply.status_code == 200 and reply.json() == {"status": "success"}
    shown = httpx.post(f"{base_url}/api/show", json={"model": "legacy"}).json()
    assert shown["system"] == "Old style."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "x", "from": "missing:1"}, "model 'missing:1' not found"),
        ({"model": "x", "from": BASE, "parameters": {"top_p": 3}}, "invalid top_p=3"),
        ({"model": "x", "from": BASE, "parameters": {"warmth": 1}}, "unknown parameter"),
        ({"model": "x", "from": BASE, "template": "{{ .Prompt }}"}, "Go template"),
        ({"model": "x", "files": {"m.gguf": "sha256:" + "0" * 64}}, "was not uploaded"),
        ({"model": "x", "files": {"m.gguf": "sha256:../../x"}}, "sha256"),
        ({"model": "x", "modelfile": "FROM ./local.gguf"}, "cannot name local files"),
        ({"model": "", "from": BASE}, "name the model"),
    ],
)
def test_bad_create_requests_are_400(base_url: str, body: dict[str, object], message: str) -> None:
    reply = httpx.post(f"{base_url}/api/create", json={**body, "stream": False})
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]
    assert httpx.post(f"{base_url}/api/show", json={"model": "x"}).status_code == 404


def test_streamed_create_reports_errors_in_the_stream(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError, match="Go template"):
        list(client.create(model="y", from_=BASE, template="{{ .System }}", stream=True))


def test_blob_upload_must_match_its_digest(base_url: str) -> None:
    data = b"some bytes"
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    reply = httpx.post(f"{base_url}/api/blobs/{wrong}", content=data)
    assert reply.status_code == 400
    assert httpx.head(f"{base_url}/api/blobs/{wrong}").status_code == 404
    right = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.post(f"{base_url}/api/blobs/{right}", content=data).status_code == 201
    assert httpx.head(f"{base_url}/api/blobs/{right}").status_code == 200
