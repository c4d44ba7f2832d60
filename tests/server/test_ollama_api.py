"""The Ollama API, driven by the official `ollama` client against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from hearth import __version__
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

GEMMA = "gemma3:270m"
CHAT = "tiny-chat:latest"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    home = tmp_path_factory.mktemp("ollama-home")
    settings = server_settings(home)
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=base_url) as client:
        yield client


@pytest.mark.gemma
def test_pull_streams_progress_then_generate(client: ollama.Client) -> None:
    updates = list(client.pull(GEMMA, stream=True))
    assert updates[0].status == "pulling manifest"
    assert any(u.completed and u.total for u in updates)
    assert updates[-1].status == "success"
    result = client.generate(
        model=GEMMA,
        prompt="The capital of France is",
        options={"temperature": 0, "num_predict": 10},
        stream=False,
    )
    assert result.done and result.response.strip()
    assert result.eval_count == 10 and result.done_reason == "length"
    assert result.prompt_eval_count and result.prompt_eval_count > 3
    streamed = "".join(
        part.response
        for part in client.generate(
            model=GEMMA,
            prompt="The capital of France is",
            options={"temperature": 0, "num_predict": 10},
            stream=True,
        )
    )
    assert streamed == result.response


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# Ollama has no tool_choice: a format schema makes the answer a Llama 3 style JSON call.
CALL_FORMAT = {
    "type": "object",
    "properties": {
        "name": {"const": "get_weather"},
        "arguments": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
        },
    },
    "required": ["name", "arguments"],
}


@pytest.mark.gemma
def test_chat_returns_tool_calls(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    options = {"temperature": 0, "num_predict": 40}
    reply = client.chat(
        model=GEMMA, messages=messages, tools=[WEATHER], format=CALL_FORMAT, options=options
    )
    assert reply.message.tool_calls is not None
    [call] = reply.message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments["city"], str)
    assert reply.message.content == ""
    parts = list(
        client.chat(
            model=GEMMA,
            messages=messages,
            tools=[WEATHER],
            format=CALL_FORMAT,
            options=options,
            stream=True,
        )
    )
    streamed = [c for part in parts for c in part.message.tool_calls or []]
    assert streamed == reply.message.tool_calls
    assert "".join(part.message.content for part in parts) == ""
    history = [*messages, reply.message, {"role": "tool", "content": "Sunny, 21 C"}]
    follow = client.chat(model=GEMMA, messages=history, tools=[WEATHER], options={"num_predict": 8})
    assert follow.done and follow.message.tool_calls is None


def test_chat_streams_ndjson_and_reports_counts(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model=CHAT,
            messages=[{"role": "user", "content": "hi"}],
            options={"num_predict": 5, "seed": 3},
            stream=True,
        )
    )
    assert parts[-1].done and parts[-1].eval_count == 5
    assert all(p.message.role == "assistant" for p in parts)
    whole = client.chat(
        model=CHAT,
        messages=[{"role": "user", "content": "hi"}],
        options={"num_predict": 5, "seed": 3},
    )
    assert whole.message.content == "".join(p.message.content or "" for p in parts)


def test_tags_show_copy_ps_and_delete(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert CHAT in names
    shown = client.show(CHAT)
    assert shown.details is not None and shown.details.format == "gguf"
    client.copy(CHAT, "tiny-copy")
    assert "tiny-copy:latest" in {m.model for m in client.list().models}
    client.generate(model="tiny-copy", prompt="x", options={"num_predict": 1}, keep_alive="1m")
    assert "tiny-copy:latest" in {m.model for m in client.ps().models}
    client.delete("tiny-copy")
    assert "tiny-copy:latest" not in {m.model for m in client.list().models}
    assert "tiny-copy:latest" not in {m.model for m in client.ps().models}


def test_keep_alive_zero_unloads(client: ollama.Client) -> None:
    client.generate(model=CHAT, prompt="x", options={"num_predict": 1}, keep_alive=-1)
    assert CHAT in {m.model for m in client.ps().models}
    client.generate(model=CHAT, prompt="", keep_alive=0)
    assert CHAT not in {m.model for m in client.ps().models}


def test_errors_use_ollamas_shape(client: ollama.Client, base_url: str) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="nope:1b", prompt="x")
    assert caught.value.status_code == 404
    bad = httpx.post(
        f"{base_url}/api/generate",
        json={"model": CHAT, "prompt": "x", "options": {"temperature": -1}},
    )
    assert bad.status_code == 400 and "temperature" in bad.json()["error"]
    template = httpx.post(
        f"{base_url}/api/generate", json={"model": CHAT, "prompt": "x", "template": "{{ .Prompt }}"}
    )
    assert template.status_code == 400 and "template" in template.json()["error"]
    assert httpx.get(f"{base_url}/api/version").json() == {"version": __version__}


def test_json_format(client: ollama.Client) -> None:
    result = client.generate(
        model=CHAT, prompt="x", format="json", options={"num_predict": 60, "temperature": 0}
    )
    if result.done_reason == "stop":
        assert isinstance(json.loads(result.response), dict)
    else:
        assert result.response.lstrip().startswith("{")
