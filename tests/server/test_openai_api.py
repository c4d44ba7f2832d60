"""The OpenAI API, driven by the official `openai` client against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hearth.store import Store
from tests.server.live_server import live_server, server_settings

GEMMA = "gemma3:270m"
CHAT = "tiny-chat:latest"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    home = tmp_path_factory.mktemp("server-home")
    settings = server_settings(home)
    store = Store(settings)
    store.pull(GEMMA)
    store.import_gguf(tiny_chat_model, "tiny-chat")
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_models_are_listed_and_retrieved(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {GEMMA, CHAT} <= ids
    assert client.models.retrieve(GEMMA).id == GEMMA
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.gemma
def test_completion_matches_the_engine_and_reports_usage(client: openai.OpenAI) -> None:
    result = client.completions.create(
        model=GEMMA, prompt="The capital of France is", max_tokens=12, temperature=0
    )
    choice = result.choices[0]
    assert choice.text.strip()
    assert choice.finish_reason in ("stop", "length")
    assert result.usage is not None
    assert result.usage.completion_tokens <= 12 and result.usage.prompt_tokens > 3
    again = client.completions.create(
        model=GEMMA, prompt="The capital of France is", max_tokens=12, temperature=0
    )
    assert again.choices[0].text == choice.text


@pytest.mark.gemma
def test_chat_streaming_equals_the_whole_answer_and_ends_with_usage(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(
        model=GEMMA,
        messages=messages,
        max_tokens=20,
        temperature=0,  # type: ignore[arg-type]
    )
    stream = client.chat.completions.create(
        model=GEMMA,
        messages=messages,
        max_tokens=20,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_chat_model_with_template_n_seed_stop_and_logprobs(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=8,
        n=2,
        seed=5,
        temperature=1.0,
        logprobs=True,
        top_logprobs=2,
    )
    assert [c.index for c in result.choices] == [0, 1]
    for choice in result.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        for entry in choice.logprobs.content:
            assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
    assert result.usage is not None and result.usage.completion_tokens <= 16


@pytest.mark.gemma
def test_json_schema_response_format(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    result = client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "Paris as JSON:"}],
        temperature=0,
        max_tokens=48,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert set(json.loads(result.choices[0].message.content or "")) == {"city"}


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 17}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_out_of_range_parameters_are_400_naming_the_parameter(
    client: openai.OpenAI, changes: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "x"}],
            **changes,  # type: ignore[arg-type]
        )
    error = caught.value.body
    assert isinstance(error, dict) and param in (error.get("param") or "") + error["message"]


def test_prompt_plus_max_tokens_beyond_the_context_names_both(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"max_tokens \(2000\).*1024"):
        client.completions.create(model=CHAT, prompt="hello", max_tokens=2000)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="gemma3:270"):
        client.chat.completions.create(
            model="gemma3:27", messages=[{"role": "user", "content": "x"}]
        )


def test_raw_bad_bodies(base_url: str) -> None:
    url = f"{base_url}/v1/chat/completions"
    headers = {"content-type": "application/json"}
    malformed = httpx.post(url, content=b"{not json", headers=headers)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    body = (
        '{"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}'
    )
    nan = httpx.post(url, content=body.encode(), headers=headers)
    assert nan.status_code == 400 and nan.json()["error"]["param"] == "temperature"
    wrong_type = httpx.post(url, json={"model": CHAT, "messages": "hello"})
    assert wrong_type.status_code == 400 and wrong_type.json()["error"]["param"] == "messages"
    huge = httpx.post(url, content=b"x" * (9 * 2**20), headers=headers)
    assert huge.status_code == 413
    template = httpx.post(
        url,
        json={
            "model": CHAT,
            "messages": [{"role": "user", "content": "x"}],
            "chat_template": "{{ 7 * 7 }}",
        },
    )
    assert template.status_code == 400 and template.json()["error"]["param"] == "chat_template"
    schema = httpx.post(
        url,
        json={
            "model": CHAT,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "frob"}}},
        },
    )
    assert schema.status_code == 400 and schema.json()["error"]["param"] == "json_schema"


def test_client_that_disconnects_mid_stream_frees_its_sequence(base_url: str) -> None:
    body = {"model": CHAT, "prompt": "long", "max_tokens": 900, "stream": True}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    # The aborted request no longer holds the engine: a new request is served at once.
    follow = httpx.post(
        f"{base_url}/v1/completions",
        json={"model": CHAT, "prompt": "x", "max_tokens": 2},
        timeout=30,
    )
    assert follow.status_code == 200


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool_call_is_parsed_into_tool_calls(client: openai.OpenAI, stream: bool) -> None:
    """tool_choice naming a function constrains the output to a valid call (grammar), and the
    server turns the model's <tool_call> text into OpenAI tool_calls."""
    request = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 200,
        "temperature": 0,
    }
    if not stream:
        choice = client.chat.completions.create(**request).choices[0]  # type: ignore[call-overload]
        calls, reason = choice.message.tool_calls, choice.finish_reason
    else:
        chunks = list(client.chat.completions.create(stream=True, **request))  # type: ignore[call-overload]
        deltas = [c for chunk in chunks for c in (chunk.choices[0].delta.tool_calls or [])]
        calls = [d for d in deltas if d.id is not None]  # a call's first delta; the rest add text
        for call in calls:
            call.function.arguments = "".join(  # type: ignore[union-attr]
                d.function.arguments or "" for d in deltas if d.index == call.index and d.function
            )
        reason = chunks[-1].choices[0].finish_reason
    assert reason == "tool_calls"
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert set(json.loads(calls[0].function.arguments)) == {"city"}


def test_tool_choice_naming_an_unknown_tool_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "x"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
