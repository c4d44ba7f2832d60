"""OpenAI Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack, aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hearth.engine.engine import Generation
from hearth.engine.request import RequestOutput
from hearth.engine.templates import ChatMessage
from hearth.engine.tool_stream import ContentDelta, ToolCallStream, ToolStreamEvent
from hearth.engine.tools import parse_tool_calls
from hearth.errors import HearthError
from hearth.safety import CONTENT_FILTER, Gate
from hearth.server.auth import key_name
from hearth.server.deps import (
    lease_and_start,
    manager_of,
    observe,
    requested_model,
    safety_gate,
    stream_outputs,
)
from hearth.server.errors import classify, openai_error
from hearth.server.metrics import Observation
from hearth.server.openai.convert import now, tool_call_id
from hearth.server.responses import convert
from hearth.server.responses.events import Event, OutputEvents
from hearth.server.responses.schemas import ResponseRequest
from hearth.server.responses.store import ResponseStore
from hearth.server.streaming import LeasedStream

router = APIRouter(prefix="/v1")
ENDPOINT = "/v1/responses"


def response_store(request: Request) -> ResponseStore:
    """The app's store, made on first use (its ttl comes from the settings)."""
    state = request.app.state
    store: ResponseStore | None = getattr(state, "responses", None)
    if store is None:
        store = ResponseStore(state.settings.responses_ttl)
        state.responses = store
    return store


@router.post("/responses", response_model=None)
async def create_response(body: ResponseRequest, request: Request) -> Any:
    model = requested_model(request, body.model)
    store = response_store(request)
    owner = key_name(request)
    earlier: list[ChatMessage] = []
    if body.previous_response_id is not None:
        found = store.conversation(body.previous_response_id, owner)
        if found is None:
            return _not_found(body.previous_response_id, "previous_response_id")
        earlier = found
    gate = safety_gate(request, model, ENDPOINT)
    turn = await gate.screen_messages(convert.turn_messages(body))
    messages = convert.conversation(body, earlier, turn)
    params = convert.params(body)
    tools = convert.tools_for_template(body)
    stack, _, generations = await lease_and_start(
        manager_of(request),
        model,
        lambda llm: llm.generate(llm.conversation_tokens(messages, tools), params),
    )
    run = _Run(body, generations[0], tools is not None, gate)
    observation = observe(request, model, ENDPOINT)

    def keep(response: dict[str, Any]) -> None:
        if body.store:
            answer = convert.output_messages(response["output"])
            store.put(response, [*turn, *answer], body.previous_response_id, owner)

    if body.stream:
        return _sse(run.events(observation, keep), stack)
    async with stack:
        outputs = await gate.collect(stream_outputs(run.generation, observation))
    response = run.whole(outputs)
    keep(response)
    return JSONResponse(response)


@router.get("/responses/{response_id}", response_model=None)
async def get_response(response_id: str, request: Request) -> Any:
    entry = response_store(request).get(response_id, key_name(request))
    if entry is None:
        return _not_found(response_id, "response_id")
    return JSONResponse(entry.body)


@router.delete("/responses/{response_id}", response_model=None)
async def delete_response(response_id: str, request: Request) -> Any:
    if not response_store(request).delete(response_id, key_name(request)):
        return _not_found(response_id, "response_id")
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


def _not_found(response_id: str, param: str) -> JSONResponse:
    return openai_error(
        404,
        f"response {response_id!r} not found (unknown, expired, or made with another key)",
        type_="invalid_request_error",
        param=param,
        code="not_found",
    )


class _Run:
    """One generation answered as a response object, whole or as a stream of events."""

    def __init__(
        self, body: ResponseRequest, generation: Generation, tools: bool, gate: Gate
    ) -> None:
        self.generation = generation
        self._gate = gate
        self._tools = tools
        self.response = convert.response_body(convert.new_id("resp"), now(), body, body.model)

    def whole(self, outputs: list[RequestOutput]) -> dict[str, Any]:
        text = "".join(output.text for output in outputs)
        return self._final(self._output_items(text), outputs[-1])

    def _output_items(self, text: str) -> list[dict[str, Any]]:
        content, calls = parse_tool_calls(text) if self._tools else (text, [])
        items = [
            convert.function_call_item(
                convert.new_id("fc"), tool_call_id(), call.name, call.arguments
            )
            for call in calls
        ]
        if content or not items:
            items.insert(0, convert.message_item(convert.new_id("msg"), content))
        return items

    def _final(self, output: list[dict[str, Any]], last: RequestOutput) -> dict[str, Any]:
        request = self.generation.request
        response = dict(self.response)
        response["output"] = output
        filtered = last.finish_reason == CONTENT_FILTER  # a safety rule cut the answer
        incomplete = last.finish_reason == "length" or filtered
        response["status"] = "incomplete" if incomplete else "completed"
        if incomplete:
            reason = CONTENT_FILTER if filtered else "max_output_tokens"
            response["incomplete_details"] = {"reason": reason}
        response["usage"] = convert.usage(
            len(request.prompt_tokens), len(request.output_tokens), request.cached_tokens
        )
        return response

    async def events(
        self, observation: Observation, keep: Callable[[dict[str, Any]], None]
    ) -> AsyncGenerator[tuple[str, Event], None]:
        stream = OutputEvents()
        for kind in ("response.created", "response.in_progress"):
            yield kind, stream.event(kind, response=copy.deepcopy(self.response))
        parser = ToolCallStream() if self._tools else None
        outputs = self._gate.outputs(stream_outputs(self.generation, observation))
        last: RequestOutput | None = None
        try:
            async with aclosing(outputs):
                async for output in outputs:
                    for event in stream.feed(_answer_events(parser, output)):
                        yield event["type"], event
                    last = output
        except HearthError as error:
            failed = dict(self.response, status="failed", error=_error_object(error))
            yield "response.failed", stream.event("response.failed", response=failed)
            return
        for event in stream.finish():
            yield event["type"], event
        assert last is not None  # stream_outputs ends with a finished output or raises
        response = self._final(stream.output, last)
        keep(response)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        yield kind, stream.event(kind, response=response)


def _answer_events(parser: ToolCallStream | None, output: RequestOutput) -> list[ToolStreamEvent]:
    if parser is None:
        return [ContentDelta(output.text)]
    events = parser.feed(output.text)
    return events + parser.finish() if output.finished else events


def _error_object(error: HearthError) -> dict[str, Any]:
    return {"code": classify(error).code or "server_error", "message": str(error)}


def _sse(
    events: AsyncGenerator[tuple[str, Event], None], stack: AsyncExitStack
) -> StreamingResponse:
    async def body() -> AsyncGenerator[bytes, None]:
        # The model stays leased until the last byte is sent; a client that leaves closes
        # every layer at once.
        async with stack, aclosing(events):
            async for kind, event in events:
                data = json.dumps(event, separators=(",", ":"))
                yield f"event: {kind}\ndata: {data}\n\n".encode()

    return LeasedStream(body(), "text/event-stream", stack)
