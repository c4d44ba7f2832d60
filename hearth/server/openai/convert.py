"""Pure conversions between OpenAI wire types and engine types."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import numpy as np

from hearth.engine.grammar import json_object_grammar, json_schema_grammar, tool_call_grammar
from hearth.engine.request import RequestOutput, TokenLogprob
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.engine.tools import parse_tool_calls
from hearth.errors import ValidationError
from hearth.server.openai.schemas import (
    MAX_STOP,
    ChatCompletionRequest,
    CompletionRequest,
    Usage,
)

TokenText = Any  # a callable token id → str, supplied by the route


def chat_params(body: ChatCompletionRequest) -> SamplingParams:
    if body.chat_template is not None:
        raise ValidationError(
            "chat_template", "…", "templates come from the model; a request cannot supply one"
        )
    if body.top_logprobs is not None and not body.logprobs:
        raise ValidationError("top_logprobs", body.top_logprobs, "requires logprobs: true")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    max_tokens = body.max_completion_tokens or body.max_tokens
    return _params(body, max_tokens, logprobs, _grammar(body))


def completion_params(body: CompletionRequest) -> SamplingParams:
    if body.echo or body.suffix:
        raise ValidationError("echo" if body.echo else "suffix", True, "is not supported")
    return _params(body, body.max_tokens or 16, body.logprobs, None)


def _params(
    body: ChatCompletionRequest | CompletionRequest,
    max_tokens: int | None,
    logprobs: int | None,
    grammar: str | None,
) -> SamplingParams:
    stop = body.stop_list()
    if len(stop) > MAX_STOP:
        raise ValidationError("stop", stop, f"at most {MAX_STOP} stop sequences")
    params = SamplingParams.from_mapping(
        {
            # OpenAI's sampling is temperature + top_p only; Hearth's other cut-offs are off.
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "presence_penalty": body.presence_penalty or 0.0,
            "frequency_penalty": body.frequency_penalty or 0.0,
            "stop": stop,
            "max_tokens": max_tokens,
            "seed": body.seed,
            "logit_bias": body.logit_bias or {},
            "logprobs": logprobs,
            "grammar": grammar,
            **_speculative(body),
        }
    )
    return params.chosen(_chosen(body, max_tokens))


_ALWAYS_CHOSEN = frozenset({"logit_bias", "logprobs", "grammar"})


def _chosen(
    body: ChatCompletionRequest | CompletionRequest, max_tokens: int | None
) -> frozenset[str]:
    """What the request set itself; a model's Modelfile defaults fill in the rest."""
    given = {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "stop": body.stop,
        "seed": body.seed,
        "max_tokens": max_tokens,
        **_speculative(body),
    }
    return _ALWAYS_CHOSEN | {name for name, value in given.items() if value is not None}


def _speculative(body: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    """The ``speculative`` extension as SamplingParams fields (those the request set)."""
    options = body.speculative
    if options is None:
        return {}
    chosen = {"speculative": options.method, "draft_max": options.max_draft}
    return {name: value for name, value in chosen.items() if value is not None}


def tools_for_template(body: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """The tools as chat templates expect them (None when the model must not call any)."""
    if not body.tools or body.tool_choice == "none":
        return None
    return [tool.model_dump(exclude_none=True) for tool in body.tools]


def _tool_grammar(body: ChatCompletionRequest) -> str | None:
    """tool_choice "required" or a named function: a grammar that only admits a call."""
    choice = body.tool_choice
    if not body.tools or choice in (None, "none", "auto"):
        if choice not in (None, "none", "auto"):
            raise ValidationError("tool_choice", choice, "requires tools")
        return None
    functions = [tool.function.model_dump(exclude_none=True) for tool in body.tools]
    name = None if choice == "required" else choice.function.name  # type: ignore[union-attr]
    return tool_call_grammar(functions, name)


def _grammar(body: ChatCompletionRequest) -> str | None:
    tool_grammar = _tool_grammar(body)
    if tool_grammar is not None:
        if body.response_format is not None and body.response_format.type != "text":
            raise ValidationError(
                "tool_choice", "required", "cannot be combined with response_format"
            )
        return tool_grammar
    response_format = body.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return json_object_grammar()
    if response_format.json_schema is None:
        raise ValidationError("response_format.json_schema", None, "required for type json_schema")
    return json_schema_grammar(response_format.json_schema.schema_)


def tool_calls_message(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """Split an answer into content and OpenAI tool calls (empty when it made none)."""
    content, calls = parse_tool_calls(text)
    wire = [
        {
            "id": tool_call_id(),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]
    return (content or None) if wire else text, wire


def tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def chat_messages(body: ChatCompletionRequest) -> list[ChatMessage]:
    role_map = {"developer": "system"}
    return [ChatMessage(role_map.get(m.role, m.role), m.text()) for m in body.messages]


def usage(prompt: int, completion: int, cached: int) -> Usage:
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details={"cached_tokens": cached},
    )


def chat_logprobs(entries: list[TokenLogprob], token_text: TokenText) -> dict[str, Any]:
    def item(token: int, logprob: float) -> dict[str, Any]:
        text = token_text(token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**item(e.token, e.logprob), "top_logprobs": [item(t, lp) for t, lp in e.top]}
            for e in entries
        ]
    }


def completion_logprobs(entries: list[TokenLogprob], token_text: TokenText) -> dict[str, Any]:
    tokens = [token_text(e.token) for e in entries]
    offsets, position = [], 0
    for text in tokens:
        offsets.append(position)
        position += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{token_text(t): lp for t, lp in e.top} for e in entries],
        "text_offset": offsets,
    }


def finish_reason(output: RequestOutput) -> str:
    # "abort" never reaches a client that is still listening; report it as "stop".
    return "length" if output.finish_reason == "length" else "stop"


def base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32, as its client decodes it."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def now() -> int:
    return int(time.time())
