"""Streamed tool calls through the official openai client: the real Gemma 3 270M, its output
forced into a call by tool_choice "required" (a grammar), arguments arriving over many chunks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from hearth.store import Store
from tests.server.live_server import live_server, server_settings

GEMMA = "gemma3:270m"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}

pytestmark = pytest.mark.gemma


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    settings = server_settings(tmp_path_factory.mktemp("tool-stream-home"))
    Store(settings).pull(GEMMA)
    with (
        live_server(settings) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


def test_a_streamed_tool_call_arrives_in_pieces_and_reassembles(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=GEMMA,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    chunks = [chunk for chunk in stream if chunk.choices]
    deltas = [d for chunk in chunks for d in (chunk.choices[0].delta.tool_calls or [])]
    first = deltas[0]
    assert first.index == 0 and first.id and first.id.startswith("call_")
    assert first.type == "function" and first.function is not None
    assert (first.function.name, first.function.arguments) == ("get_weather", "")
    assert all(d.index == 0 and d.id is None for d in deltas[1:])  # one call, one start
    pieces = [d.function.arguments for d in deltas[1:] if d.function and d.function.arguments]
    assert len(pieces) > 1  # the arguments streamed as the model wrote them
    assert set(json.loads("".join(pieces))) == {"city"}
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)  # no <tool_call> text
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_with_tools_offered_the_stream_says_what_the_whole_answer_says(
    client: openai.OpenAI,
) -> None:
    """tool_choice "auto": the streamed content (and calls, if any) equal the unstreamed ones."""
    request = {
        "model": GEMMA,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "tools": [WEATHER_TOOL],
        "max_tokens": 16,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**request).choices[0]  # type: ignore[call-overload]
    chunks = [c for c in client.chat.completions.create(stream=True, **request) if c.choices]  # type: ignore[call-overload]
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 3  # content streamed, not held to the end
    assert content == (whole.message.content or "")
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    names = [d.function.name for d in deltas if d.id is not None and d.function is not None]
    assert names == [call.function.name for call in whole.message.tool_calls or []]
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason
