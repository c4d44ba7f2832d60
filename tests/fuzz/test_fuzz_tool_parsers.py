"""Tool-call parsers read model output, which a prompt can steer: any text parses without an
exception, and adversarial text costs work linear in its length (ReDoS-style blow-ups are the
known incident class).

Work is counted, not timed: the number of Python lines the parser executes (``sys.settrace``),
which is deterministic. For the whole-answer parser, whose scanning happens inside ``str.find``
and the C JSON decoder, the CPU time of the best of three runs is compared as well, with a wide
margin (linear gives a ratio near 4 for 4x the input, quadratic 16).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.tool_stream import ToolCallStream
from hearth.engine.tools import HERMES_CLOSE, HERMES_OPEN, LLAMA_TAG, MISTRAL_TAG, parse_tool_calls

CALL = '{"name": "f", "arguments": {"a": 1}}'
# Each maps a repeat count to an input of size proportional to it.
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "openers": lambda k: HERMES_OPEN * k,
    "openers with braces": lambda k: (HERMES_OPEN + "{") * k,
    "opener prefixes": lambda k: "<tool_" * k,
    "deep unterminated nesting": lambda k: (
        HERMES_OPEN + '{"name": "f", "arguments": ' + '{"a": ' * k
    ),
    "deep closed nesting": lambda k: (
        HERMES_OPEN
        + '{"name": "f", "arguments": '
        + '{"a": ' * k
        + "1"
        + "}" * k
        + "}"
        + HERMES_CLOSE
    ),
    "deep nesting as the name": lambda k: (
        HERMES_OPEN + '{"name": ' + "[" * k + "]" * k + ', "arguments": {}}' + HERMES_CLOSE
    ),
    "mistral brackets": lambda k: MISTRAL_TAG + "[" * k,
    "mistral many calls": lambda k: MISTRAL_TAG + " [" + (CALL + ",") * k + CALL + "]",
    "llama braces": lambda k: "{" * k,
    "llama tag and braces": lambda k: LLAMA_TAG + '{"name": ' * k,
    "escapes in a name": lambda k: HERMES_OPEN + '{"name": "' + "\\\\" * k,
    "escaped quotes in string arguments": lambda k: (
        HERMES_OPEN + '{"name": "f", "arguments": "' + 'a\\"' * k
    ),
    "many valid calls": lambda k: (HERMES_OPEN + CALL + HERMES_CLOSE) * k,
    "calls without closers": lambda k: (HERMES_OPEN + CALL) * k,
    "closers only": lambda k: HERMES_CLOSE * k,
    "plain text": lambda k: "word " * k,
}
SMALL, LINEAR_RATIO = 200, 6.0  # 4x the input may cost at most 6x the work


def _lines_executed(function: Callable[[], Any]) -> int:
    count = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1  # call, line and return events: all deterministic
        return tracer

    sys.settrace(tracer)
    try:
        function()
    finally:
        sys.settrace(None)
    return count


def _parse_whole(text: str) -> Callable[[], Any]:
    return lambda: parse_tool_calls(text)


def _stream(text: str, chunk: int) -> Callable[[], Any]:
    def run() -> None:
        stream = ToolCallStream()
        for start in range(0, len(text), chunk):
            stream.feed(text[start : start + chunk])
        stream.finish()

    return run


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
@pytest.mark.parametrize("parser", ["whole", "stream by character", "stream by 7"])
def test_work_grows_linearly_on_adversarial_output(family: str, parser: str) -> None:
    def work(k: int) -> int:
        text = ADVERSARIAL[family](k)
        if parser == "whole":
            return _lines_executed(_parse_whole(text))
        return _lines_executed(_stream(text, 1 if parser == "stream by character" else 7))

    small, large = work(SMALL), work(4 * SMALL)
    assert large <= LINEAR_RATIO * max(small, 50), f"{family}: {small} → {large} lines"


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_nesting_deeper_than_python_recursion_raises_nothing(family: str) -> None:
    text = ADVERSARIAL[family](5_000)  # the C JSON decoder recurses: RecursionError past ~1000
    parse_tool_calls(text)
    _stream(text, 64)()


def _best_cpu_seconds(function: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        function()
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("family", sorted(ADVERSARIAL))
def test_whole_answer_parsing_cpu_grows_linearly(family: str) -> None:
    small = _best_cpu_seconds(_parse_whole(ADVERSARIAL[family](2_000)))
    large = _best_cpu_seconds(_parse_whole(ADVERSARIAL[family](8_000)))
    assert large <= 10 * max(small, 0.002), f"{family}: {small:.4f}s → {large:.4f}s"


fragments = st.sampled_from(
    [
        HERMES_OPEN,
        HERMES_CLOSE,
        MISTRAL_TAG,
        LLAMA_TAG,
        "<tool_",
        "{",
        "}",
        "[",
        "]",
        '"',
        "\\",
        ",",
        ":",
        '"name"',
        '"arguments"',
        '"parameters"',
        '"f"',
        "1",
        " ",
        "\n",
        CALL,
    ]
)
outputs = st.lists(fragments | st.text(max_size=4), max_size=40).map("".join)


@given(text=outputs, chunk=st.integers(1, 9))
def test_any_output_parses_without_an_exception(text: str, chunk: int) -> None:
    content, calls = parse_tool_calls(text)
    assert isinstance(content, str)
    for call in calls:
        assert isinstance(call.name, str) and isinstance(call.arguments, str)
    _stream(text, chunk)()
