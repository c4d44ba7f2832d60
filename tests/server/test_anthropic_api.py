"""The Anthropic Messages API, driven by the official `anthropic` client against a real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from hearth.db import open_database
from hearth.engine.tool_stream import ArgumentsDelta, ContentDelta, ToolCallStart
from hearth.server.anthropic.convert import stop_details
from hearth.server.anthropic.events import MessageEvents
from hearth.server.keys import KeyStore
from hearth.server.usage import UsageLog
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

GEMMA = "gemma3:270m"
CHAT = "tiny-chat:latest"
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    },
}
HI: Any = [{"role": "user", "content": "hi"}]
# anthropic 2.x dropped temperature/top_p/top_k from create(); the API still takes them.
GREEDY: Any = {"temperature": 0}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    settings = server_settings(tmp_path_factory.mktemp("anthropic-home"))
    store = Store(settings)
    store.pull(GEMMA)
    store.import_gguf(tiny_chat_model, "tiny-chat")
    with live_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0) as client:
        yield client


def test_a_message_has_content_stop_reason_and_usage(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=CHAT, max_tokens=8, messages=HI, extra_body=GREEDY)
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert message.model == CHAT
    assert [block.type for block in message.content] == ["text"]
    assert message.stop_reason == "max_tokens" and message.stop_sequence is None
    assert message.usage.output_tokens == 8 and _prompt(message.usage) > 3


def _prompt(usage: anthropic.types.Usage) -> int:
    """The whole prompt: Anthropic's input_tokens leave out what the prefix cache served."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0)


def test_system_prompt_as_text_or_blocks_reaches_the_model(client: anthropic.Anthropic) -> None:
    plain = client.messages.count_tokens(model=CHAT, messages=HI)
    with_text = client.messages.count_tokens(model=CHAT, messages=HI, system="Be brief.")
    blocks = client.messages.count_tokens(
        model=CHAT, messages=HI, system=[{"type": "text", "text": "Be brief."}]
    )
    # The tiny model's template writes "<|system|>Be brief.\n", about one token per byte.
    assert with_text.input_tokens >= plain.input_tokens + len("<|system|>Be brief.\n")
    assert blocks.input_tokens == with_text.input_tokens
    created = client.messages.create(model=CHAT, max_tokens=1, messages=HI, system="Be brief.")
    assert _prompt(created.usage) == with_text.input_tokens


def test_stop_sequences_end_the_answer_with_stop_reason_stop_sequence(
    client: anthropic.Anthropic,
) -> None:
    free = client.messages.create(model=CHAT, max_tokens=30, messages=HI, extra_body=GREEDY)
    text = free.content[0].text  # type: ignore[union-attr]
    stop = text[5:8]  # something the greedy answer is sure to write
    assert len(stop) == 3 and text.find(stop) == 5
    stopped = client.messages.create(
        model=CHAT, max_tokens=30, messages=HI, extra_body=GREEDY, stop_sequences=["zzzz", stop]
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == stop
    assert stopped.content[0].text == text[:5]  # type: ignore[union-attr]


def test_streaming_events_follow_anthropic_and_match_the_whole_answer(
    client: anthropic.Anthropic, base_url: str
) -> None:
    whole = client.messages.create(model=CHAT, max_tokens=10, messages=HI, extra_body=GREEDY)
    with client.messages.stream(
        model=CHAT, max_tokens=10, messages=HI, extra_body=GREEDY
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "content_block_delta" in kinds
    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 10
    raw = httpx.post(
        f"{base_url}/v1/messages",
        json={"model": CHAT, "max_tokens": 3, "messages": HI, "stream": True},
    ).text
    names = [line.removeprefix("event: ") for line in raw.splitlines() if line.startswith("event:")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_use_and_its_result(client: anthropic.Anthropic, stream: bool) -> None:
    request: Any = {
        "model": CHAT,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "extra_body": GREEDY,
    }
    if stream:
        with client.messages.stream(**request) as events:
            deltas = [
                e.delta.partial_json
                for e in events
                if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
            ]
            message = events.get_final_message()
        assert deltas and json.loads("".join(deltas)) == message.content[-1].input  # type: ignore[union-attr]
    else:
        message = client.messages.create(**request)
    use = message.content[-1]
    assert message.stop_reason == "tool_use" and use.type == "tool_use"
    assert use.name == "get_weather" and use.id.startswith("toolu_")
    assert set(use.input) == {"city"}
    turns: Any = [
        *request["messages"],
        {"role": "assistant", "content": [use.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
        },
    ]
    follow = client.messages.create(model=CHAT, max_tokens=2, messages=turns, tools=[WEATHER_TOOL])
    assert _prompt(follow.usage) > _prompt(message.usage) + len("<|tool|>sunny")


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages"),
        ({"stop_sequences": ["x"] * 17}, "stop_sequences"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"max_tokens": 2000}, "max_tokens"),  # prompt + max_tokens over the 1024 context
    ],
)
def test_bad_requests_are_400_in_anthropic_shape(
    base_url: str, changes: dict[str, Any], where: str
) -> None:
    body = {"model": CHAT, "max_tokens": 4, "messages": HI, **changes}
    body = {key: value for key, value in body.items() if value is not None}
    response = httpx.post(f"{base_url}/v1/messages", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert where in error["error"]["message"]


def test_unknown_model_and_malformed_bodies_through_the_client(
    client: anthropic.Anthropic, base_url: str
) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="gemma3:27", max_tokens=4, messages=HI)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="gemma3:27", messages=HI)
    url = f"{base_url}/v1/messages"
    malformed = httpx.post(url, content=b"{oops", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json()["error"] == {
        "type": "invalid_request_error",
        "message": "the request body is not valid JSON",
    }
    huge = httpx.post(url, content=b"x" * (9 * 2**20), headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"


def test_x_api_key_is_a_hearth_key_and_usage_is_recorded(
    tmp_path: Path, tiny_chat_model: Path
) -> None:
    settings = server_settings(tmp_path / "home")
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    database = open_database(settings)
    try:
        secret = KeyStore(database).create("claude-app", models=None, expires=None).secret
        with live_server(settings) as url:
            with anthropic.Anthropic(base_url=url, api_key=secret, max_retries=0) as keyed:
                message = keyed.messages.create(model=CHAT, max_tokens=3, messages=HI)
            with (
                anthropic.Anthropic(base_url=url, api_key="hth_wrong", max_retries=0) as wrong,
                pytest.raises(anthropic.AuthenticationError) as caught,
            ):
                wrong.messages.create(model=CHAT, max_tokens=3, messages=HI)
            assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
            assert (
                'endpoint="/v1/messages"'
                in httpx.get(f"{url}/metrics", headers={"x-api-key": secret}).text
            )
        rows = _usage_rows(UsageLog(database), "claude-app")
        assert rows and rows[0].completion_tokens == message.usage.output_tokens
    finally:
        database.dispose()


def _usage_rows(log: UsageLog, key: str) -> list[Any]:
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = [row for row in log.summary(group_by="key") if row.group == key]
            if rows:
                return rows
            time.sleep(0.1)
        return []
    finally:
        log.close()


@pytest.mark.gemma
def test_gemma_streams_a_tool_use_in_pieces(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=GEMMA,
        max_tokens=60,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
        extra_body=GREEDY,
    ) as stream:
        pieces = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        message = stream.get_final_message()
    assert len(pieces) > 1  # the arguments streamed as the model wrote them
    assert message.stop_reason == "tool_use"
    use = message.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather"
    assert use.input == json.loads("".join(pieces))


@pytest.mark.gemma
def test_gemma_answers_and_stops_at_a_stop_sequence(client: anthropic.Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "Count: one, two, three, four, five"}]
    free = client.messages.create(model=GEMMA, max_tokens=24, messages=messages, extra_body=GREEDY)
    text = free.content[0].text  # type: ignore[union-attr]
    assert text.strip()
    words = text.split()
    assert len(words) >= 2
    stopped = client.messages.create(
        model=GEMMA,
        max_tokens=24,
        messages=messages,
        extra_body=GREEDY,
        stop_sequences=[words[1]],
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == words[1]
    assert words[1] not in stopped.content[0].text  # type: ignore[union-attr]


# -- pure logic ---------------------------------------------------------------------------------


def test_stop_reasons() -> None:
    assert stop_details("stop", True, False, ["x"], "ab", "ab") == ("end_turn", None)
    assert stop_details("length", False, False, [], "ab", "ab") == ("max_tokens", None)
    assert stop_details("stop", False, True, [], "", "") == ("tool_use", None)
    assert stop_details("stop", False, False, ["yy", "x"], "abxyy", "ab") == ("stop_sequence", "x")


def test_single_call_keeps_only_the_first_tool_use() -> None:
    events = MessageEvents(single_call=True)
    names = events.feed(
        [
            ContentDelta("hi"),
            ToolCallStart(0, "a"),
            ArgumentsDelta(0, '{"x": 1}'),
            ToolCallStart(1, "b"),
            ArgumentsDelta(1, '{"y": 2}'),
        ]
    )
    names += events.finish()
    assert [name for name, _ in names].count("content_block_start") == 2
    assert events.content[0] == {"type": "text", "text": "hi"}
    assert events.content[1]["name"] == "a" and events.content[1]["input"] == {"x": 1}
