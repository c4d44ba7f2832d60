"""Tool calls in a model's output, for the common formats. Pure logic, linear time.

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (one or more);
- Mistral: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``;
- Llama 3: the whole answer is ``{"name": ..., "parameters": {...}}`` (optionally after
  ``<|python_tag|>``).

Parsing uses ``str.find`` and ``json.JSONDecoder.raw_decode`` only (no backtracking regular
expressions), so adversarial output costs time linear in its length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL_TAG = "[TOOL_CALLS]"
LLAMA_TAG = "<|python_tag|>"
_decoder = json.JSONDecoder(strict=False)  # tolerate raw control characters in strings


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """(content left for the user, tool calls); no calls found gives (text, [])."""
    for parse in (_hermes, _mistral, _llama):
        found = parse(text)
        if found is not None:
            return found
    return text, []


def _hermes(text: str) -> tuple[str, list[ToolCall]] | None:
    calls: list[ToolCall] = []
    content: list[str] = []
    position = 0
    while (start := text.find(HERMES_OPEN, position)) >= 0:
        end = text.find(HERMES_CLOSE, start)
        if end < 0:
            break
        call = _call(text[start + len(HERMES_OPEN) : end].strip())
        if call is None:
            return None
        content.append(text[position:start])
        calls.append(call)
        position = end + len(HERMES_CLOSE)
    if not calls:
        return None
    content.append(text[position:])
    return "".join(content).strip(), calls


def _mistral(text: str) -> tuple[str, list[ToolCall]] | None:
    start = text.find(MISTRAL_TAG)
    if start < 0:
        return None
    value = _json_at(text[start + len(MISTRAL_TAG) :].lstrip())
    items = value if isinstance(value, list) else [value]
    calls = [_call_from(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return text[:start].strip(), [call for call in calls if call is not None]


def _llama(text: str) -> tuple[str, list[ToolCall]] | None:
    body = text.strip()
    if body.startswith(LLAMA_TAG):
        body = body[len(LLAMA_TAG) :].strip()
    if not body.startswith("{"):
        return None
    try:
        value, end = _decoder.raw_decode(body)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    call = _call_from(value)
    if call is None or body[end:].strip():
        return None
    return "", [call]


def _call(text: str) -> ToolCall | None:
    return _call_from(_json_at(text))


def _json_at(text: str) -> Any:
    try:
        value, _ = _decoder.raw_decode(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value


def _call_from(value: Any) -> ToolCall | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models send the JSON already encoded
        return ToolCall(value["name"], arguments)
    return ToolCall(value["name"], json.dumps(arguments, ensure_ascii=False))
