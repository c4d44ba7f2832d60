"""ToolCallStream: incremental tool-call parsing, the same however the text is split."""

from __future__ import annotations

import json
import time

import pytest

from hearth.engine.tool_stream import (
    ArgumentsDelta,
    ContentDelta,
    ToolCallStart,
    ToolCallStream,
    ToolStreamEvent,
)
from hearth.engine.tools import ToolCall, parse_tool_calls


def replay(pieces: list[str]) -> list[ToolStreamEvent]:
    stream = ToolCallStream()
    events = [event for piece in pieces for event in stream.feed(piece)]
    return events + stream.finish()


def assemble(events: list[ToolStreamEvent]) -> tuple[str, list[ToolCall]]:
    """What a client rebuilds from the deltas: content, and each call's name and arguments."""
    content, names, arguments = "", [], []
    for event in events:
        if isinstance(event, ContentDelta):
            content += event.text
        elif isinstance(event, ToolCallStart):
            assert event.index == len(names)
            names.append(event.name)
            arguments.append("")
        else:
            arguments[event.index] += event.text
    return content, [ToolCall(n, a) for n, a in zip(names, arguments, strict=True)]


def every_split(text: str) -> list[list[str]]:
    """The text whole, char by char, and cut in two at every position."""
    return [[text], list(text)] + [[text[:i], text[i:]] for i in range(1, len(text))]


HERMES = (
    'Let me check. <tool_call>\n{"name": "weather", "arguments": {"city": "Paris <tool_call>"}}\n'
    '</tool_call>\n<tool_call>{"arguments": {}, "name": "time"}</tool_call>'
)
MISTRAL = '[TOOL_CALLS] [{"name": "add", "arguments": {"a": [1, "]}"], "b": 2}}, {"name": "n"}]'
LLAMA = '<|python_tag|>{"name": "search", "parameters": {"q": "a \\"quoted\\" {word}"}}'
ENCODED = '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>'


@pytest.mark.parametrize("text", [HERMES, MISTRAL, LLAMA, ENCODED, "  " + LLAMA[14:]])
def test_calls_match_the_whole_answer_parser_for_every_split(text: str) -> None:
    expected_content, expected_calls = parse_tool_calls(text)
    for pieces in every_split(text):
        content, calls = assemble(replay(pieces))
        assert content == expected_content, pieces
        assert [c.name for c in calls] == [c.name for c in expected_calls]
        for call, expected in zip(calls, expected_calls, strict=True):
            assert json.loads(call.arguments) == json.loads(expected.arguments)


@pytest.mark.parametrize(
    "text",
    [
        "a < b and b > c",
        "<tool is not <tool_call",
        "x <tool_call>not json</tool_call> y",
        "[TOOL_CALLS are mentioned] here",
        '{"answer": 42} is JSON, not a call',
        "<|python_tag|> hello",
        "<|python",
        "ends with [TOOL_CALLS]",
        '<tool_call>{"arguments": {}}</tool_call>',  # no name: not a call
        "  spaces around  ",
    ],
)
def test_text_that_only_looks_like_a_call_is_content_for_every_split(text: str) -> None:
    for pieces in every_split(text):
        assert assemble(replay(pieces)) == (text, []), pieces


def test_content_streams_until_an_opener_and_a_partial_opener_is_held() -> None:
    stream = ToolCallStream()
    assert stream.feed("Checking ") == [ContentDelta("Checking")]
    assert stream.feed("now <tool_") == [ContentDelta(" now")]  # "<tool_" might be an opener
    assert stream.feed('call>{"name": "get') == []
    assert stream.feed('_weather", "arguments": {"ci') == [
        ToolCallStart(0, "get_weather"),
        ArgumentsDelta(0, '{"ci'),
    ]
    assert stream.feed('ty": "Paris"}') == [ArgumentsDelta(0, 'ty": "Paris"}')]
    assert stream.feed("}</tool_call>") == []
    assert stream.finish() == []
    assert stream.calls == 1


def test_a_partial_opener_that_goes_another_way_is_content() -> None:
    stream = ToolCallStream()
    assert stream.feed("x <tool") == [ContentDelta("x")]
    assert stream.feed("box>") == [ContentDelta(" <toolbox>")]
    assert stream.feed(" [TOOL") == []  # might be [TOOL_CALLS]
    assert stream.finish() == [ContentDelta(" [TOOL")]


def test_arguments_stream_before_the_call_ends() -> None:
    stream = ToolCallStream()
    events = stream.feed('{"name": "f", "parameters": {"text": "')
    assert events == [ToolCallStart(0, "f"), ArgumentsDelta(0, '{"text": "')]
    assert stream.feed("abc") == [ArgumentsDelta(0, "abc")]


def test_arguments_before_the_name_are_sent_with_the_start() -> None:
    stream = ToolCallStream()
    assert stream.feed('<tool_call>{"arguments": {"a": 1}, ') == []
    assert stream.feed('"name": "f"}') == [ToolCallStart(0, "f"), ArgumentsDelta(0, '{"a": 1}')]


def test_a_call_cut_short_keeps_what_was_sent() -> None:
    events = replay(['<tool_call>{"name": "f", "arguments": {"a": "unfinis'])
    assert assemble(events) == ("", [ToolCall("f", '{"a": "unfinis')])


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>" * 20000,
        "[TOOL_CALLS]" + "[" * 40000,
        "{" * 40000,
        '<tool_call>{"name": "f", "arguments": ' + "[" * 40000,
        "<tool_" * 20000,
        " " * 100000 + "x",
        '{"name": "f", "arguments": {"s": "' + "\\\\" * 50000 + '"}}',
    ],
)
def test_adversarial_input_fed_token_by_token_stays_linear(text: str) -> None:
    started = time.perf_counter()
    stream = ToolCallStream()
    for i in range(0, len(text), 3):
        stream.feed(text[i : i + 3])
    stream.finish()
    assert time.perf_counter() - started < 2.0  # quadratic would take minutes
