"""The OpenAI Responses API, driven by the official `openai` client against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hearth.config import Settings
from hearth.engine.templates import ChatMessage
from hearth.errors import ConfigError
from hearth.server.responses.store import ResponseStore
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

GEMMA = "gemma3:270m"
CHAT = "tiny-chat:latest"
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    },
}
STRICT_WEATHER_TOOL: Any = {**WEATHER_TOOL, "strict": True}
YES_NO: Any = {
    "format": {
        "type": "json_schema",
        "name": "verdict",
        "schema": {
            "type": "object",
            "properties": {"answer": {"enum": ["yes", "no"]}},
            "required": ["answer"],
            "additionalProperties": False,
        },
    }
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    settings = server_settings(tmp_path_factory.mktemp("responses-home"))
    store = Store(settings)
    store.pull(GEMMA)
    store.import_gguf(tiny_chat_model, "tiny-chat")
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_a_response_is_kept_retrieved_and_deleted(client: openai.OpenAI, base_url: str) -> None:
    result = client.responses.create(model=CHAT, input="hi", max_output_tokens=8, temperature=0)
    assert result.id.startswith("resp_") and result.object == "response"
    assert result.status == "incomplete"  # random weights never stop before 8 tokens
    assert result.incomplete_details is not None
    assert result.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in result.output] == ["message"]
    assert result.output_text  # the SDK's own aggregation of output_text parts
    assert result.usage is not None and result.usage.output_tokens == 8
    assert result.usage.total_tokens == result.usage.input_tokens + 8
    again = client.responses.retrieve(result.id)
    assert again.output_text == result.output_text and again.usage == result.usage
    client.responses.delete(result.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(result.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(result.id)
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'endpoint="/v1/responses"' in metrics  # counted like every generation


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=CHAT, input="hi", max_output_tokens=4, temperature=0)
    second = client.responses.create(
        model=CHAT,
        input="and then?",
        previous_response_id=first.id,
        max_output_tokens=4,
        temperature=0,
    )
    alone = client.responses.create(
        model=CHAT, input="and then?", max_output_tokens=4, temperature=0
    )
    assert first.usage is not None and second.usage is not None and alone.usage is not None
    # The model read the first turn's input and answer before the new input.
    carried = len(b"<|user|>hi\n<|assistant|>") + len(first.output_text.encode())
    assert second.usage.input_tokens >= alone.usage.input_tokens + carried - 2
    assert second.previous_response_id == first.id
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=CHAT, input="x", previous_response_id="resp_nope")
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    unkept = client.responses.create(model=CHAT, input="x", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unkept.id)


def test_instructions_and_input_items_reach_the_model(client: openai.OpenAI) -> None:
    plain = client.responses.create(model=CHAT, input="hi", max_output_tokens=2)
    items = client.responses.create(
        model=CHAT,
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        max_output_tokens=2,
    )
    assert plain.usage is not None and items.usage is not None
    extra = "<|system|>Be brief.\n<|system|>Answer in French.\n<|tool|>sunny\n"
    assert items.usage.input_tokens > plain.usage.input_tokens + len(extra)
    assert items.instructions == "Be brief."


def test_streamed_events_follow_the_openai_sequence(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model=CHAT, input="hi", max_output_tokens=6, temperature=0, stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",  # max_output_tokens reached, as OpenAI reports it
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas and final.usage is not None
    assert final.usage.output_tokens == 6
    whole = client.responses.create(model=CHAT, input="hi", max_output_tokens=6, temperature=0)
    assert whole.output_text == deltas


def test_structured_output_streams_through_the_sdk_helper(client: openai.OpenAI) -> None:
    """text.format json_schema: a grammar holds the answer to the schema, so it ends."""
    with client.responses.stream(
        model=CHAT, input="yes or no?", text=YES_NO, max_output_tokens=40, temperature=0
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed"
    assert json.loads(final.output_text)["answer"] in ("yes", "no")
    assert "".join(deltas) == final.output_text


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_call_is_a_function_call_item(client: openai.OpenAI, stream: bool) -> None:
    request: Any = {
        "model": CHAT,
        "input": "weather in Paris?",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 200,
        "temperature": 0,
    }
    if stream:
        events = list(client.responses.create(stream=True, **request))
        kinds = [event.type for event in events]
        assert "response.function_call_arguments.delta" in kinds
        assert kinds[-3:] == [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        result = events[-1].response
        assert "".join(pieces) == result.output[-1].arguments
    else:
        result = client.responses.create(**request)
    call = result.output[-1]
    assert result.status == "completed" and call.type == "function_call"
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    assert set(json.loads(call.arguments)) == {"city"}
    follow = client.responses.create(
        model=CHAT,
        previous_response_id=result.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        max_output_tokens=2,
    )
    assert follow.usage is not None and result.usage is not None
    assert follow.usage.input_tokens > result.usage.input_tokens + result.usage.output_tokens


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"input": []}, "input"),
        ({"input": [{"type": "image_generation_call", "id": "x"}]}, "input"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "frob"}}}},
            "json_schema",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(
    client: openai.OpenAI, changes: dict[str, Any], param: str
) -> None:
    request: Any = {"model": CHAT, "input": "x", **changes}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**request)
    error = caught.value.body
    assert isinstance(error, dict) and param in (error.get("param") or "") + error["message"]


def test_unknown_model_over_context_and_malformed_bodies(
    client: openai.OpenAI, base_url: str
) -> None:
    with pytest.raises(openai.NotFoundError, match="gemma3:270"):
        client.responses.create(model="gemma3:27", input="x")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=CHAT, input="x", max_output_tokens=2000)
    assert caught.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    url = f"{base_url}/v1/responses"
    malformed = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    no_input = httpx.post(url, json={"model": CHAT})
    assert no_input.status_code == 400 and no_input.json()["error"]["param"] == "input"


@pytest.mark.gemma
def test_gemma_answers_and_streams_the_same_text(client: openai.OpenAI) -> None:
    request: Any = {
        "model": GEMMA,
        "input": "The capital of France is",
        "max_output_tokens": 12,
        "temperature": 0,
    }
    whole = client.responses.create(**request)
    assert whole.output_text.strip()
    events = list(client.responses.create(stream=True, **request))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text


@pytest.mark.gemma
def test_gemma_streams_a_required_tool_call_in_pieces(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=GEMMA,
        input="What is the weather in Paris?",
        tools=[STRICT_WEATHER_TOOL],
        tool_choice="required",
        max_output_tokens=60,
        temperature=0,
    ) as stream:
        pieces = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert len(pieces) > 1  # the arguments streamed as the model wrote them
    call = final.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert set(json.loads("".join(pieces))) == {"city"}
    assert call.parsed_arguments == json.loads(call.arguments)  # the SDK parsed strict tools


# -- the store, pure logic ----------------------------------------------------------------------


def _body(response_id: str) -> dict[str, Any]:
    return {"id": response_id}


def test_store_expires_caps_and_keeps_responses_to_their_key() -> None:
    now = [0.0]
    store = ResponseStore(60, max_entries=2, clock=lambda: now[0])
    store.put(_body("a"), [ChatMessage("user", "1")], None, "key-1")
    store.put(_body("b"), [ChatMessage("user", "2")], "a", "key-1")
    assert store.conversation("b", "key-1") == [ChatMessage("user", "1"), ChatMessage("user", "2")]
    assert store.get("b", "key-2") is None and store.conversation("b", None) is None
    assert not store.delete("b", "key-2")
    store.put(_body("c"), [], None, "key-1")  # over max_entries: the oldest goes
    assert store.get("a", "key-1") is None and store.conversation("b", "key-1") is None
    now[0] = 61
    assert store.get("c", "key-1") is None  # expired


def test_store_caps_text_and_a_zero_ttl_keeps_nothing() -> None:
    store = ResponseStore(60, max_chars=10)
    store.put(_body("a"), [ChatMessage("user", "x" * 6)], None, None)
    store.put(_body("b"), [ChatMessage("user", "y" * 6)], None, None)
    assert store.get("a", None) is None and store.get("b", None) is not None
    off = ResponseStore(0)
    off.put(_body("a"), [], None, None)
    assert off.get("a", None) is None


def test_responses_ttl_setting() -> None:
    assert Settings.from_env({"HEARTH_HOME": "/h"}).responses_ttl == 3600
    assert (
        Settings.from_env({"HEARTH_HOME": "/h", "HEARTH_RESPONSES_TTL": "30m"}).responses_ttl
        == 1800
    )
    assert Settings.from_env({"HEARTH_HOME": "/h", "HEARTH_RESPONSES_TTL": "0"}).responses_ttl == 0
    for bad in ("-1", "soon"):
        with pytest.raises(ConfigError, match="HEARTH_RESPONSES_TTL"):
            Settings.from_env({"HEARTH_HOME": "/h", "HEARTH_RESPONSES_TTL": bad})
