"""Tool calls parsed while the answer streams: content goes out as it comes, calls as they form.

:class:`ToolCallStream` is fed the answer's text piece by piece (``feed``) and returns events:
:class:`ContentDelta` for text that cannot be part of a call, :class:`ToolCallStart` once a call's
name is known, :class:`ArgumentsDelta` for each fragment of its JSON arguments as the model writes
them. ``finish`` flushes what was held back. The formats are those of :mod:`hearth.engine.tools`:

- Hermes / Qwen ``<tool_call>{...}</tool_call>`` anywhere in the answer;
- Mistral ``[TOOL_CALLS] [{...}, ...]`` anywhere;
- Llama 3: the answer starts with ``{`` (optionally after ``<|python_tag|>``).

Text that might still become an opener (``<tool_`` at the end of what has arrived) is held back,
as is trailing whitespace (dropped before a call, like the whole-answer parser's strip). A call
object is scanned character by character with a constant amount of state per character (nesting
stack, string and escape flags), so the total work is linear in the answer, however it is split.
Arguments written as a JSON object stream raw, exactly as the model writes them; arguments written
as a JSON string (already encoded) are sent whole when the string ends. Text that turns out not to
be a call before its name was sent goes out as content; a call whose name was sent stays a call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum, auto

from hearth.engine.tools import HERMES_CLOSE, HERMES_OPEN, LLAMA_TAG, MISTRAL_TAG

_OPENERS = (HERMES_OPEN, MISTRAL_TAG)
_LONGEST_OPENER = max(len(opener) for opener in _OPENERS)
_CLOSERS = {"{": "}", "[": "]"}
_ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int
    name: str


@dataclass(frozen=True)
class ArgumentsDelta:
    index: int
    text: str


ToolStreamEvent = ContentDelta | ToolCallStart | ArgumentsDelta


class _Mode(Enum):
    START = auto()  # nothing but whitespace yet: a Llama 3 call may still begin
    CONTENT = auto()
    HERMES_CLOSE = auto()  # after the object, before </tool_call>
    MISTRAL_LIST = auto()  # after [TOOL_CALLS], before [ or the first object
    MISTRAL_NEXT = auto()  # inside the list, before an object, "," or "]"
    CALL = auto()  # inside a call object


class _Outcome(Enum):
    MORE = auto()  # the object is not finished: feed more
    DONE = auto()
    FAILED = auto()  # not a call object after all


class _Key(Enum):
    EXPECT_OBJECT = auto()  # whitespace, then "{"
    EXPECT_KEY = auto()  # after "{" or ","
    IN_KEY = auto()
    EXPECT_COLON = auto()
    EXPECT_VALUE = auto()
    IN_VALUE = auto()
    EXPECT_COMMA = auto()  # after a value: "," or "}"


class _CallScanner:
    """One call object, ``{"name": ..., "arguments": ...}``, scanned a character at a time.

    Only the top level is interpreted (keys, where each value starts and ends); nested values
    are followed with a stack of closers. ``prefix`` (the opener) and every character consumed
    are kept, to be given back as content if this turns out not to be a call.
    """

    def __init__(self, prefix: str) -> None:
        self.raw: list[str] = [prefix]
        self.name: str | None = None
        self.started = False  # its ToolCallStart was sent
        self.arguments_done = False
        self.fragments: list[str] = []  # argument text not yet handed out
        self._state = _Key.EXPECT_OBJECT
        self._stack: list[str] = []
        self._in_string = False
        self._escape = False
        self._scalar = False
        self._key: list[str] = []
        self._value_key: object = None  # the key of the top-level value being read
        self._streaming = False  # that value is object arguments: its text goes out raw
        self._value: list[str] = []  # otherwise its raw text (the name, string arguments)

    def scan(self, text: str, start: int) -> tuple[int, _Outcome]:
        """Consume ``text`` from ``start``; return where it stopped and how (a failing
        character is not consumed)."""
        for position in range(start, len(text)):
            char = text[position]
            outcome = self._step(char)
            if outcome is _Outcome.FAILED:
                return position, outcome
            self.raw.append(char)
            if outcome is _Outcome.DONE:
                return position + 1, outcome
        return len(text), _Outcome.MORE

    def _step(self, char: str) -> _Outcome:
        if self._state is _Key.IN_VALUE:
            return self._value_char(char)
        if self._state is _Key.IN_KEY:
            self._key.append(char)
            if self._string_char(char):
                self._state = _Key.EXPECT_COLON
            return _Outcome.MORE
        if char.isspace():
            return _Outcome.MORE
        return self._structural(char)

    def _structural(self, char: str) -> _Outcome:
        state = self._state
        if state is _Key.EXPECT_OBJECT and char == "{":
            self._stack.append("}")
            self._state = _Key.EXPECT_KEY
        elif state is _Key.EXPECT_KEY and char == '"':
            self._key = ['"']
            self._in_string = True
            self._state = _Key.IN_KEY
        elif state is _Key.EXPECT_COLON and char == ":":
            self._value_key = _decode(self._key)
            self._state = _Key.EXPECT_VALUE
        elif state is _Key.EXPECT_VALUE and char not in "}],:":
            self._begin_value(char)
        elif state is _Key.EXPECT_COMMA and char == ",":
            self._state = _Key.EXPECT_KEY
        elif state in (_Key.EXPECT_KEY, _Key.EXPECT_COMMA) and char == "}":
            return self._end_object()
        else:
            return _Outcome.FAILED
        return _Outcome.MORE

    def _end_object(self) -> _Outcome:
        if self.name is None:
            return _Outcome.FAILED
        if not self.arguments_done:  # a call with no arguments takes none
            self.fragments.append("{}")
            self.arguments_done = True
        return _Outcome.DONE

    def _begin_value(self, char: str) -> None:
        self._state = _Key.IN_VALUE
        self._value = []
        self._streaming = (
            self._value_key in _ARGUMENT_KEYS and not self.arguments_done and char != '"'
        )
        if char in _CLOSERS:
            self._stack.append(_CLOSERS[char])
        elif char == '"':
            self._in_string = True
        else:
            self._scalar = True
        self._keep(char)

    def _value_char(self, char: str) -> _Outcome:
        """A character inside a top-level value (string, container or scalar)."""
        if self._scalar:
            if not (char.isspace() or char in ",}"):
                self._keep(char)
                return _Outcome.MORE
            self._scalar = False
            self._end_value()
            return self._step(char)  # the delimiter belongs to the object
        self._keep(char)
        if self._in_string:
            self._string_char(char)
        elif char in _CLOSERS:
            self._stack.append(_CLOSERS[char])
        elif char in "}]":
            if self._stack.pop() != char:
                return _Outcome.FAILED
        elif char == '"':
            self._in_string = True
        if len(self._stack) == 1 and not self._in_string:
            self._end_value()
        return _Outcome.MORE

    def _string_char(self, char: str) -> bool:
        """Advance the string state past ``char``; True when it closed the string."""
        if self._escape:
            self._escape = False
        elif char == "\\":
            self._escape = True
        elif char == '"':
            self._in_string = False
            return True
        return False

    def _keep(self, char: str) -> None:
        (self.fragments if self._streaming else self._value).append(char)

    def _end_value(self) -> None:
        self._state = _Key.EXPECT_COMMA
        key = self._value_key
        if key == "name" and self.name is None:
            name = _decode(self._value)
            self.name = name if isinstance(name, str) else None
        elif key in _ARGUMENT_KEYS and not self.arguments_done:
            if not self._streaming:  # arguments sent as an encoded JSON string
                decoded = _decode(self._value)
                self.fragments.append(decoded if isinstance(decoded, str) else "{}")
            self.arguments_done = True
        self._streaming = False
        self._value = []


def _decode(raw: list[str]) -> object:
    try:
        return json.loads("".join(raw))
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


class ToolCallStream:
    """Incremental tool-call parser: ``feed(text) → events``, then ``finish() → events``."""

    def __init__(self) -> None:
        self.calls = 0  # calls started (their ToolCallStart was sent)
        self._mode = _Mode.START
        self._held = ""  # a short tail that may be the start of an opener or a closing tag
        self._leading: list[str] = []  # START: whitespace (and <|python_tag|>) so far
        self._tagged = False  # START: <|python_tag|> seen
        self._spaces: list[str] = []  # trailing whitespace of the content, held back
        self._events: list[ToolStreamEvent] = []
        self._scanner: _CallScanner | None = None
        self._after_call = _Mode.CONTENT  # where a finished call object returns to
        self._opener = ""  # the last opener, with the whitespace before it

    def feed(self, text: str) -> list[ToolStreamEvent]:
        text, self._held = self._held + text, ""
        position = 0
        while position < len(text):
            position = _STEPS[self._mode](self, text, position)
        return self._take()

    def finish(self) -> list[ToolStreamEvent]:
        """Flush: held text that never became an opener is content; an unfinished call ends."""
        held, self._held = self._held, ""
        scanner, self._scanner = self._scanner, None
        if self._mode is _Mode.START:
            self._content("".join(self._leading) + held)
        elif scanner is not None and not scanner.started:
            self._content("".join(scanner.raw))  # never became a call
        elif self._mode is _Mode.CONTENT:
            self._content(held)
        elif self._mode is _Mode.MISTRAL_LIST:
            self._content(self._opener)  # a bare [TOOL_CALLS]
        if not self.calls and self._spaces:
            self._emit(ContentDelta("".join(self._spaces)))
        self._spaces = []
        return self._take()

    # -- one step per mode: consume from ``position``, return where to go on -------------------

    def _start(self, text: str, position: int) -> int:
        end = _skip_spaces(text, position)
        self._leading.append(text[position:end])
        rest = text[end : end + len(LLAMA_TAG)]
        if not rest:
            return end
        if not self._tagged and rest == LLAMA_TAG:
            self._leading.append(LLAMA_TAG)
            self._tagged = True
            return end + len(LLAMA_TAG)
        if not self._tagged and LLAMA_TAG.startswith(rest):  # "<|python" so far
            self._held = text[end:]
            return len(text)
        leading, self._leading = "".join(self._leading), []
        if rest[0] == "{":  # a Llama 3 call, unless its object says otherwise
            self._begin_call(leading, _Mode.CONTENT)
        else:
            self._mode = _Mode.CONTENT
            self._content(leading)
        return end

    def _content_step(self, text: str, position: int) -> int:
        found, opener = _first_opener(text, position)
        if found < 0:
            keep = _opener_prefix_length(text, position)
            self._content(text[position : len(text) - keep])
            self._held = text[len(text) - keep :]
            return len(text)
        self._content(text[position:found])
        # Whitespace before a call is dropped, or given back with the opener if no call follows.
        self._opener = "".join(self._spaces) + opener
        self._spaces = []
        if opener == HERMES_OPEN:
            self._begin_call(self._opener, _Mode.HERMES_CLOSE)
        else:
            self._mode = _Mode.MISTRAL_LIST
        return found + len(opener)

    def _mistral_list(self, text: str, position: int) -> int:
        position = _skip_spaces(text, position)
        if position < len(text):
            if text[position] == "[":
                self._mode = _Mode.MISTRAL_NEXT
                return position + 1
            self._begin_call(self._opener, _Mode.CONTENT)  # a single object, or not a call
        return position

    def _mistral_next(self, text: str, position: int) -> int:
        position = _skip_spaces(text, position)
        if position >= len(text):
            return position
        if text[position] == ",":
            return position + 1
        if text[position] == "]":
            self._mode = _Mode.CONTENT
            return position + 1
        self._begin_call("", _Mode.MISTRAL_NEXT)
        return position

    def _hermes_close(self, text: str, position: int) -> int:
        position = _skip_spaces(text, position)
        rest = text[position : position + len(HERMES_CLOSE)]
        if rest == HERMES_CLOSE:
            self._mode = _Mode.CONTENT
            return position + len(HERMES_CLOSE)
        if rest and HERMES_CLOSE.startswith(rest):  # "</tool" so far: wait for the rest
            self._held = rest
            return len(text)
        if rest:
            self._mode = _Mode.CONTENT  # no closing tag: be lenient and carry on
        return position

    def _call_step(self, text: str, position: int) -> int:
        scanner = self._scanner
        assert scanner is not None
        end, outcome = scanner.scan(text, position)
        self._send_call(scanner)
        if outcome is _Outcome.MORE:
            return end
        self._scanner = None
        if outcome is _Outcome.DONE:
            self._mode = self._after_call
            return end
        if not scanner.started:  # not a call: its text was content
            self._content("".join(scanner.raw))
        self._mode = _Mode.CONTENT
        return end

    def _begin_call(self, prefix: str, then: _Mode) -> None:
        self._scanner = _CallScanner(prefix)
        self._after_call = then
        self._mode = _Mode.CALL

    def _send_call(self, scanner: _CallScanner) -> None:
        """The call's start once its name is known, then its argument text so far."""
        if scanner.name is None:
            return
        if not scanner.started:
            scanner.started = True
            self._emit(ToolCallStart(self.calls, scanner.name))
            self.calls += 1
        if scanner.fragments:
            self._emit(ArgumentsDelta(self.calls - 1, "".join(scanner.fragments)))
            scanner.fragments = []

    # -- output ------------------------------------------------------------------------------

    def _content(self, text: str) -> None:
        """Content, less its trailing whitespace (held until more content comes)."""
        if not text:
            return
        stripped = text.rstrip()
        if not stripped:
            self._spaces.append(text)
            return
        self._spaces.append(stripped)
        self._emit(ContentDelta("".join(self._spaces)))
        self._spaces = [text[len(stripped) :]] if len(stripped) < len(text) else []

    def _emit(self, event: ToolStreamEvent) -> None:
        """Add an event, merged into the previous one when they are of a kind."""
        last = self._events[-1] if self._events else None
        if isinstance(event, ContentDelta) and isinstance(last, ContentDelta):
            self._events[-1] = ContentDelta(last.text + event.text)
        elif (
            isinstance(event, ArgumentsDelta)
            and isinstance(last, ArgumentsDelta)
            and last.index == event.index
        ):
            self._events[-1] = ArgumentsDelta(last.index, last.text + event.text)
        else:
            self._events.append(event)

    def _take(self) -> list[ToolStreamEvent]:
        events, self._events = self._events, []
        return events


_STEPS = {
    _Mode.START: ToolCallStream._start,
    _Mode.CONTENT: ToolCallStream._content_step,
    _Mode.HERMES_CLOSE: ToolCallStream._hermes_close,
    _Mode.MISTRAL_LIST: ToolCallStream._mistral_list,
    _Mode.MISTRAL_NEXT: ToolCallStream._mistral_next,
    _Mode.CALL: ToolCallStream._call_step,
}


def _first_opener(text: str, start: int) -> tuple[int, str]:
    """The earliest opener at or after ``start``: (position, opener), or (-1, "")."""
    best, which = -1, ""
    for opener in _OPENERS:
        found = text.find(opener, start)
        if found >= 0 and (best < 0 or found < best):
            best, which = found, opener
    return best, which


def _opener_prefix_length(text: str, start: int) -> int:
    """Length of the longest tail of ``text[start:]`` that an opener starts with."""
    for length in range(min(_LONGEST_OPENER - 1, len(text) - start), 0, -1):
        tail = text[len(text) - length :]
        if any(opener.startswith(tail) for opener in _OPENERS):
            return length
    return 0


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
