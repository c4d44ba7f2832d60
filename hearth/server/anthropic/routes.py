"""Anthropic Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Errors on these paths take Anthropic's shape (``hearth/server/errors.py``). Clients send the key
as ``x-api-key`` (Anthropic's SDK) or ``Authorization: Bearer``; both are Hearth keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hearth.engine.engine import Generation
from hearth.engine.llm import ModelView
from hearth.engine.request import RequestOutput
from hearth.engine.tool_stream import ContentDelta, ToolCallStream, ToolStreamEvent
from hearth.engine.tools import parse_tool_calls
from hearth.errors import HearthError
from hearth.safety import CONTENT_FILTER, Gate
from hearth.server.anthropic import convert
from hearth.server.anthropic.events import Event, MessageEvents, data
from hearth.server.anthropic.schemas import CountTokensRequest, MessagesRequest
from hearth.server.deps import (
    lease_and_start,
    manager_of,
    model_lease,
    observe,
    requested_model,
    safety_gate,
    stream_outputs,
)
from hearth.server.errors import ANTHROPIC_TYPES, classify
from hearth.server.metrics import Observation
from hearth.server.streaming import LeasedStream

router = APIRouter(prefix="/v1")
ENDPOINT = "/v1/messages"


@router.post("/messages", response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> Any:
    model = requested_model(request, body.model)
    gate = safety_gate(request, model, ENDPOINT)
    messages = await gate.screen_messages(convert.chat_messages(body))
    params = convert.params(body)
    tools = convert.tools_for_template(body)
    stack, llm, generations = await lease_and_start(
        manager_of(request),
        model,
        lambda llm: llm.generate(llm.conversation_tokens(messages, tools), params),
    )
    reply = _Reply(body, llm, generations[0], tools is not None)
    observation = observe(request, model, ENDPOINT)
    if body.stream:
        return _sse(reply.events(observation, gate), stack)
    async with stack:  # the tokenizer is read before the lease ends
        outputs = await gate.collect(stream_outputs(reply.generation, observation))
        return JSONResponse(reply.whole(outputs))


@router.post("/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    model = requested_model(request, body.model)
    messages = convert.chat_messages(body)
    tools = convert.tools_for_template(body)
    async with model_lease(manager_of(request), model) as llm:
        tokens = await asyncio.to_thread(llm.conversation_tokens, messages, tools)
    return {"input_tokens": len(tokens)}


class _Reply:
    """One generation answered as an Anthropic message, whole or as a stream of events."""

    def __init__(
        self, body: MessagesRequest, llm: ModelView, generation: Generation, tools: bool
    ) -> None:
        self.generation = generation
        self._body = body
        self._llm = llm
        self._tools = tools
        choice = body.tool_choice
        self._single_call = choice is not None and choice.disable_parallel_tool_use
        self._id = convert.message_id()

    def whole(self, outputs: list[RequestOutput]) -> dict[str, Any]:
        text = "".join(output.text for output in outputs)
        content, calls = parse_tool_calls(text) if self._tools else (text, [])
        calls = calls[:1] if self._single_call else calls
        blocks = [{"type": "text", "text": content}] if content or not calls else []
        blocks += [convert.tool_use_block(call) for call in calls]
        message = convert.message(self._id, self._body.model, blocks, self._usage())
        reason, sequence = self._stop(outputs[-1], text, bool(calls))
        return {**message, "stop_reason": reason, "stop_sequence": sequence}

    async def events(self, observation: Observation, gate: Gate) -> AsyncGenerator[Event, None]:
        start = convert.message(self._id, self._body.model, [], self._usage())
        yield "message_start", {"type": "message_start", "message": start}
        stream = MessageEvents(single_call=self._single_call)
        parser = ToolCallStream() if self._tools else None
        outputs = gate.outputs(stream_outputs(self.generation, observation))
        shown: list[str] = []
        last: RequestOutput | None = None
        try:
            async with aclosing(outputs):
                async for output in outputs:
                    shown.append(output.text)
                    for event in stream.feed(_answer_events(parser, output)):
                        yield event
                    last = output
        except HearthError as error:
            yield "error", _error(error)
            return
        for event in stream.finish():
            yield event
        assert last is not None  # stream_outputs ends with a finished output or raises
        reason, sequence = self._stop(last, "".join(shown), stream.calls > 0)
        usage = self._usage()
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage}
        yield "message_stop", {"type": "message_stop"}

    def _stop(self, last: RequestOutput, shown: str, made_calls: bool) -> tuple[str, str | None]:
        if last.finish_reason == CONTENT_FILTER:  # a safety rule cut the answer
            return "refusal", None
        request = self.generation.request
        tokens = request.output_tokens
        tokenizer = self._llm.tokenizer
        return convert.stop_details(
            last.finish_reason,
            ended_on_eog=bool(tokens) and tokenizer.is_eog(tokens[-1]),
            made_calls=made_calls,
            stops=list(self._body.stop_sequences or []),
            full_text=tokenizer.detokenize(tokens),
            shown_text=shown,
        )

    def _usage(self) -> dict[str, Any]:
        request = self.generation.request
        return convert.usage(
            len(request.prompt_tokens), len(request.output_tokens), request.cached_tokens
        )


def _answer_events(parser: ToolCallStream | None, output: RequestOutput) -> list[ToolStreamEvent]:
    if parser is None:
        return [ContentDelta(output.text)]
    events = parser.feed(output.text)
    return events + parser.finish() if output.finished else events


def _error(error: HearthError) -> dict[str, Any]:
    status = classify(error).status
    type_ = ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": type_, "message": str(error)}}


def _sse(events: AsyncGenerator[Event, None], stack: AsyncExitStack) -> StreamingResponse:
    async def body() -> AsyncGenerator[bytes, None]:
        # The model stays leased until the last byte is sent (the tokenizer is read at the
        # end); a client that leaves closes every layer at once.
        async with stack, aclosing(events):
            async for event in events:
                yield data(event).encode()

    return LeasedStream(body(), "text/event-stream", stack)
