"""Pure conversions between Anthropic Messages wire types and engine types."""

from __future__ import annotations

import json
import uuid
from typing import Any

from hearth.engine.grammar import tool_call_grammar
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.engine.tools import HERMES_CLOSE, HERMES_OPEN, ToolCall
from hearth.errors import ValidationError
from hearth.server.anthropic.schemas import (
    Conversation,
    MessageIn,
    MessagesRequest,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def chat_messages(body: Conversation) -> list[ChatMessage]:
    """The system prompt, then each message; a tool result becomes a "tool" turn of its own
    and a tool use is shown to the model in the format it writes calls in."""
    system = body.system_text()
    messages = [ChatMessage("system", system)] if system else []
    for message in body.messages:
        messages += _turns(message)
    return messages


def _turns(message: MessageIn) -> list[ChatMessage]:
    if isinstance(message.content, str):
        return [ChatMessage(message.role, message.content)]
    turns: list[ChatMessage] = []
    pending: list[str] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            pending.append(block.text)
        elif isinstance(block, ToolUseBlock):
            pending.append(call_text(block.name, json.dumps(block.input, ensure_ascii=False)))
        elif isinstance(block, ToolResultBlock):
            if pending:
                turns.append(ChatMessage(message.role, "".join(pending)))
                pending = []
            prefix = "error: " if block.is_error else ""
            turns.append(ChatMessage("tool", prefix + block.text()))
    if pending or not turns:
        turns.append(ChatMessage(message.role, "".join(pending)))
    return turns


def call_text(name: str, arguments: str) -> str:
    return f'{HERMES_OPEN}{{"name": "{name}", "arguments": {arguments}}}{HERMES_CLOSE}'


def tools_for_template(body: Conversation) -> list[dict[str, Any]] | None:
    """The tools as chat templates expect them (None when the model must not call any)."""
    choice = body.tool_choice
    if not body.tools or (choice is not None and choice.type == "none"):
        return None
    return [{"type": "function", "function": tool.spec()} for tool in body.tools]


def params(body: MessagesRequest) -> SamplingParams:
    given = {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "stop": body.stop_sequences or None,
        "max_tokens": body.max_tokens,
    }
    values = {
        # Anthropic's defaults: temperature 1, no top-p/top-k cut-off; Hearth's min_p is off.
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "top_k": body.top_k or 0,
        "min_p": 0.0,
        "stop": body.stop_sequences or [],
        "max_tokens": body.max_tokens,
        "grammar": tool_grammar(body),
    }
    chosen = {"grammar", "logit_bias", "logprobs"} | {k for k, v in given.items() if v is not None}
    return SamplingParams.from_mapping(values).chosen(frozenset(chosen))


def tool_grammar(body: MessagesRequest) -> str | None:
    """tool_choice "any" or a named tool: a grammar that only admits a call."""
    choice = body.tool_choice
    if choice is None or choice.type in ("auto", "none"):
        return None
    if not body.tools:
        raise ValidationError("tool_choice", choice.type, "requires tools")
    if choice.type == "tool" and choice.name is None:
        raise ValidationError("tool_choice.name", None, 'required for type "tool"')
    name = choice.name if choice.type == "tool" else None
    return tool_call_grammar([tool.spec() for tool in body.tools], name)


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id(), "name": call.name, "input": _input(call)}


def _input(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as an object (Anthropic's ``input``); anything else is wrapped."""
    try:
        value = json.loads(call.arguments)
    except json.JSONDecodeError:
        return {"arguments": call.arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def stop_details(
    finish_reason: str | None,
    ended_on_eog: bool,
    made_calls: bool,
    stops: list[str],
    full_text: str,
    shown_text: str,
) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence``. The engine says "stop" for both an
    end-of-generation token and a stop string; the last token tells which, and the text the
    model wrote past what was shown tells which stop string."""
    if made_calls:
        return "tool_use", None
    if finish_reason == "length":
        return "max_tokens", None
    if ended_on_eog or not stops:
        return "end_turn", None
    rest = full_text[len(shown_text) :] if full_text.startswith(shown_text) else full_text
    found = [(rest.find(stop), stop) for stop in stops if stop in rest]
    return "stop_sequence", min(found)[1] if found else stops[0]


def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt - cached,
        "output_tokens": completion,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def message(
    message_id: str, model: str, content: list[dict[str, Any]], usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
