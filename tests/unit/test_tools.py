import json
import time

import pytest

from hearth.engine.tools import ToolCall, parse_tool_calls


def test_hermes_calls_and_surrounding_text() -> None:
    text = (
        'Let me check. <tool_call>{"name": "weather", "arguments": {"city": "Paris"}}</tool_call>'
        '<tool_call>{"name": "time", "arguments": {}}</tool_call>'
    )
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert calls == [ToolCall("weather", '{"city": "Paris"}'), ToolCall("time", "{}")]


def test_mistral_list() -> None:
    text = '[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}]'
    assert parse_tool_calls(text) == ("", [ToolCall("add", '{"a": 1, "b": 2}')])


def test_llama3_json_with_parameters_and_python_tag() -> None:
    text = '<|python_tag|>{"name": "search", "parameters": {"q": "llamas"}}'
    content, calls = parse_tool_calls(text)
    assert content == "" and calls == [ToolCall("search", '{"q": "llamas"}')]
    assert json.loads(calls[0].arguments) == {"q": "llamas"}


@pytest.mark.parametrize(
    "text",
    [
        "just an answer",
        '{"not": "a call"}',
        "<tool_call>not json</tool_call>",
        '<tool_call>{"name": "x"',  # never closed
        "[TOOL_CALLS] nonsense",
        '{"name": "x", "parameters": {}} and then more text',
    ],
)
def test_plain_or_broken_output_is_content(text: str) -> None:
    assert parse_tool_calls(text) == (text, [])


def test_adversarial_output_parses_in_linear_time() -> None:
    for text in ("<tool_call>" * 20000, "[TOOL_CALLS]" + "[" * 20000, "{" * 40000):
        started = time.perf_counter()
        parse_tool_calls(text)
        assert time.perf_counter() - started < 1.0
