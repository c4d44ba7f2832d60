"""Pure conversions between Responses API wire types and engine types."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from hearth.engine.grammar import json_object_grammar, json_schema_grammar, tool_call_grammar
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.engine.tools import HERMES_CLOSE, HERMES_OPEN
from hearth.errors import ValidationError
from hearth.server.responses.schemas import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ResponseRequest,
)

_ROLES = {"developer": "system"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def turn_messages(body: ResponseRequest) -> list[ChatMessage]:
    """This request's input as chat messages; consecutive calls share one assistant turn."""
    messages: list[ChatMessage] = []
    calls: list[str] = []
    for item in body.items():
        if isinstance(item, FunctionCallItem):
            calls.append(call_text(item.name, item.arguments))
            continue
        if calls:
            messages.append(ChatMessage("assistant", "".join(calls)))
            calls = []
        if isinstance(item, MessageItem):
            messages.append(ChatMessage(_ROLES.get(item.role, item.role), item.text()))
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(ChatMessage("tool", item.text()))
    if calls:
        messages.append(ChatMessage("assistant", "".join(calls)))
    return messages


def conversation(
    body: ResponseRequest, earlier: Sequence[ChatMessage], turn: Sequence[ChatMessage]
) -> list[ChatMessage]:
    """What the model reads: the instructions (this request's only: OpenAI does not carry a
    previous response's instructions over), the earlier turns, then this one."""
    system = [ChatMessage("system", body.instructions)] if body.instructions else []
    return [*system, *earlier, *turn]


def call_text(name: str, arguments: str) -> str:
    """An earlier call, shown to the model in the format it writes calls in."""
    return f'{HERMES_OPEN}{{"name": "{name}", "arguments": {arguments or "{}"}}}{HERMES_CLOSE}'


def params(body: ResponseRequest) -> SamplingParams:
    chosen = {"grammar", "logit_bias", "logprobs"}
    values: dict[str, Any] = {
        # OpenAI's sampling is temperature + top_p only; Hearth's other cut-offs are off.
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "max_tokens": body.max_output_tokens,
        "grammar": grammar(body),
    }
    given = {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_tokens": body.max_output_tokens,
    }
    chosen |= {name for name, value in given.items() if value is not None}
    return SamplingParams.from_mapping(values).chosen(frozenset(chosen))


def tools_for_template(body: ResponseRequest) -> list[dict[str, Any]] | None:
    """The tools as chat templates expect them (None when the model must not call any)."""
    if not body.tools or body.tool_choice == "none":
        return None
    return [{"type": "function", "function": tool.spec()} for tool in body.tools]


def grammar(body: ResponseRequest) -> str | None:
    tool_grammar = _tool_grammar(body)
    text_format = body.text_format()
    if tool_grammar is not None:
        if text_format.type != "text":
            raise ValidationError("tool_choice", "required", "cannot be combined with text.format")
        return tool_grammar
    if text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return json_object_grammar()
    if text_format.schema_ is None:
        raise ValidationError("text.format.schema", None, "required for type json_schema")
    return json_schema_grammar(text_format.schema_)


def _tool_grammar(body: ResponseRequest) -> str | None:
    """tool_choice "required" or a named function: a grammar that only admits a call."""
    choice = body.tool_choice
    if choice in (None, "none", "auto"):
        return None
    if not body.tools:
        raise ValidationError("tool_choice", choice, "requires tools")
    name = None if isinstance(choice, str) else choice.name
    return tool_call_grammar([tool.spec() for tool in body.tools], name)


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else [output_text(text)],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_messages(output: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    """A response's output items as the assistant turn the next request continues from."""
    parts: list[str] = []
    for item in output:
        if item["type"] == "message":
            parts.extend(part["text"] for part in item["content"])
        elif item["type"] == "function_call":
            parts.append(call_text(item["name"], item["arguments"]))
    return [ChatMessage("assistant", "".join(parts))]


def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response_body(
    response_id: str, created: int, body: ResponseRequest, model: str
) -> dict[str, Any]:
    """A response object in progress (no output yet); the route fills in the rest."""
    text_format = body.text_format().model_dump(by_alias=True, exclude_none=True)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "model": model,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tools": [tool.model_dump(exclude_none=True) for tool in body.tools or []],
        "tool_choice": _tool_choice(body),
        "parallel_tool_calls": body.parallel_tool_calls,
        "previous_response_id": body.previous_response_id,
        "text": {"format": text_format},
        "metadata": body.metadata or {},
        "store": body.store,
        "truncation": "disabled",
        "user": body.user,
        "usage": None,
    }


def _tool_choice(body: ResponseRequest) -> Any:
    choice = body.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()
