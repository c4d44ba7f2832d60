"""OpenAI-compatible routes: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, Callable
from contextlib import AsyncExitStack, aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hearth.engine.engine import Generation
from hearth.engine.llm import ModelView
from hearth.engine.request import RequestOutput
from hearth.engine.tool_stream import ContentDelta, ToolCallStart, ToolCallStream, ToolStreamEvent
from hearth.errors import ValidationError
from hearth.safety import CONTENT_FILTER, Gate
from hearth.server.deps import (
    embed_texts,
    lease_and_start,
    manager_of,
    observe,
    requested_model,
    safety_gate,
    stream_outputs,
)
from hearth.server.licenses_api import license_card
from hearth.server.metrics import Observation
from hearth.server.openai import convert
from hearth.server.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
)
from hearth.server.streaming import LeasedStream

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(request: Request) -> ModelList:
    store = manager_of(request).store
    cards = [
        _card(str(m.name), int(m.modified.timestamp()), license_card(request, m))
        for m in store.list()
    ]
    return ModelList(data=cards)


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    model = manager_of(request).store.resolve(model_id)
    return _card(str(model.name), int(model.modified.timestamp()), license_card(request, model))


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    model = requested_model(request, body.model)
    if body.dimensions is not None:
        raise ValidationError("dimensions", body.dimensions, "is not supported")
    vectors, tokens = await embed_texts(request, model, body.texts(), "/v1/embeddings")
    encode = convert.base64_floats if body.encoding_format == "base64" else list
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _card(name: str, created: int, license: dict[str, Any] | None = None) -> ModelCard:
    return ModelCard(id=name, created=created, license=license)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    model = requested_model(request, body.model)
    params = convert.chat_params(body)
    gate = safety_gate(request, model, "/v1/chat/completions")
    messages = await gate.screen_messages(convert.chat_messages(body))
    tools = convert.tools_for_template(body)
    stack, llm, generations = await lease_and_start(
        manager_of(request),
        model,
        lambda llm: llm.generate(llm.conversation_tokens(messages, tools), params, n=body.n),
    )
    reply = _Reply(
        "chat.completion",
        body.model,
        llm,
        generations,
        lambda: observe(request, model, "/v1/chat/completions"),
        tools=tools is not None,
        gate=gate,
    )
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = reply.tool_chunks(usage) if tools is not None else reply.chat_chunks(usage)
        return _sse(chunks, stack)
    async with stack:
        return JSONResponse(await reply.chat_response())


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Any:
    model = requested_model(request, body.model)
    params = convert.completion_params(body)
    prompt = body.prompt if isinstance(body.prompt, str) else "".join(body.prompt)
    gate = safety_gate(request, model, "/v1/completions")
    prompt = await gate.screen_prompt(prompt)
    stack, llm, generations = await lease_and_start(
        manager_of(request),
        model,
        lambda llm: llm.generate(llm.tokenizer.tokenize(prompt), params, n=body.n),
    )
    reply = _Reply(
        "text_completion",
        body.model,
        llm,
        generations,
        lambda: observe(request, model, "/v1/completions"),
        gate=gate,
    )
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return _sse(reply.completion_chunks(usage), stack)
    async with stack:
        return JSONResponse(await reply.completion_response())


def _sse(events: AsyncGenerator[dict[str, Any], None], stack: AsyncExitStack) -> StreamingResponse:
    async def body() -> AsyncGenerator[bytes, None]:
        async with stack:  # the model stays leased until the last byte is sent
            async with aclosing(events):  # a client that leaves closes every layer now
                async for event in events:
                    yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
            yield b"data: [DONE]\n\n"

    return LeasedStream(body(), "text/event-stream", stack)


class _Reply:
    """Turns a request's generations into OpenAI responses or stream chunks."""

    def __init__(
        self,
        kind: str,
        model: str,
        llm: ModelView,
        generations: list[Generation],
        observe: Callable[[], Observation],
        *,
        tools: bool = False,
        gate: Gate,
    ) -> None:
        self._observe = observe
        self._tools = tools
        self._gate = gate
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.kind = kind
        self.model = model
        self.created = convert.now()
        self.generations = generations
        self.token_text: Callable[[int], str] = llm.tokenizer.piece_text

    async def chat_response(self) -> dict[str, Any]:
        choices = []
        for index, generation in enumerate(self.generations):
            outputs = await self._collect(generation)
            message, reason = self._message(_text(outputs), _finish_reason(outputs[-1]))
            choice: dict[str, Any] = {
                "index": index,
                "message": message,
                "finish_reason": reason,
                "logprobs": self._chat_logprobs(generation),
            }
            choices.append(choice)
        return self._envelope("chat.completion", choices, usage=True)

    def _message(self, text: str, reason: str) -> tuple[dict[str, Any], str]:
        """The assistant message, with tool calls parsed out when the request offered tools."""
        if not self._tools:
            return {"role": "assistant", "content": text}, reason
        content, calls = convert.tool_calls_message(text)
        if not calls:
            return {"role": "assistant", "content": text}, reason
        return {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"

    async def tool_chunks(self, include_usage: bool) -> AsyncGenerator[dict[str, Any], None]:
        """With tools: content streams while the answer cannot be a call yet; a call streams as
        its start (index, id, name) and then its argument text as the model writes it."""
        for index, generation in enumerate(self.generations):
            parser = ToolCallStream()
            outputs = self._outputs(generation)
            async with aclosing(outputs):
                yield self._chunk(index, {"role": "assistant", "content": ""}, None)
                async for output in outputs:
                    events = parser.feed(output.text)
                    if output.finished:
                        events += parser.finish()
                    for event in events:
                        yield self._chunk(index, _tool_delta(event), None)
                    if output.finished:
                        reason = "tool_calls" if parser.calls else _finish_reason(output)
                        yield self._chunk(index, {}, reason)
        if include_usage:
            yield self._envelope("chat.completion.chunk", [], usage=True)

    def _outputs(self, generation: Generation) -> AsyncGenerator[RequestOutput, None]:
        """The generation's outputs through the output safety checks."""
        return self._gate.outputs(stream_outputs(generation, self._observe()))

    async def _collect(self, generation: Generation) -> list[RequestOutput]:
        outputs = self._outputs(generation)
        async with aclosing(outputs):
            return [output async for output in outputs]

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._envelope("chat.completion.chunk", [choice], usage=False)

    async def completion_response(self) -> dict[str, Any]:
        choices = []
        for index, generation in enumerate(self.generations):
            outputs = await self._collect(generation)
            choices.append(
                {
                    "index": index,
                    "text": _text(outputs),
                    "finish_reason": _finish_reason(outputs[-1]),
                    "logprobs": self._completion_logprobs(generation),
                }
            )
        return self._envelope("text_completion", choices, usage=True)

    async def chat_chunks(self, include_usage: bool) -> AsyncGenerator[dict[str, Any], None]:
        for index, generation in enumerate(self.generations):
            first = True
            outputs = self._outputs(generation)
            async with aclosing(outputs):
                async for output in outputs:
                    delta: dict[str, Any] = {"content": output.text}
                    if first:
                        delta["role"] = "assistant"
                        first = False
                    choice: dict[str, Any] = {
                        "index": index,
                        "delta": delta,
                        "logprobs": convert.chat_logprobs(list(output.logprobs), self.token_text)
                        if generation.request.params.logprobs is not None
                        else None,
                        "finish_reason": _finish_reason(output) if output.finished else None,
                    }
                    yield self._envelope("chat.completion.chunk", [choice], usage=False)
        if include_usage:
            yield self._envelope("chat.completion.chunk", [], usage=True)

    async def completion_chunks(self, include_usage: bool) -> AsyncGenerator[dict[str, Any], None]:
        for index, generation in enumerate(self.generations):
            outputs = self._outputs(generation)
            async with aclosing(outputs):
                async for output in outputs:
                    choice = {
                        "index": index,
                        "text": output.text,
                        "logprobs": convert.completion_logprobs(
                            list(output.logprobs), self.token_text
                        )
                        if generation.request.params.logprobs is not None
                        else None,
                        "finish_reason": _finish_reason(output) if output.finished else None,
                    }
                    yield self._envelope("text_completion", [choice], usage=False)
        if include_usage:
            yield self._envelope("text_completion", [], usage=True)

    def _envelope(self, kind: str, choices: list[dict[str, Any]], *, usage: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "system_fingerprint": "hearth",
        }
        if usage:
            body["usage"] = self._usage().model_dump()
        return body

    def _usage(self) -> Any:
        requests = [g.request for g in self.generations]
        return convert.usage(
            prompt=len(requests[0].prompt_tokens),
            completion=sum(len(r.output_tokens) for r in requests),
            cached=requests[0].cached_tokens,
        )

    def _chat_logprobs(self, generation: Generation) -> dict[str, Any] | None:
        if generation.request.params.logprobs is None:
            return None
        return convert.chat_logprobs(generation.request.logprobs, self.token_text)

    def _completion_logprobs(self, generation: Generation) -> dict[str, Any] | None:
        if generation.request.params.logprobs is None:
            return None
        return convert.completion_logprobs(generation.request.logprobs, self.token_text)


def _tool_delta(event: ToolStreamEvent) -> dict[str, Any]:
    """One stream event as a chat delta (a call's first delta carries its new id)."""
    if isinstance(event, ContentDelta):
        return {"content": event.text}
    if isinstance(event, ToolCallStart):
        call = {"name": event.name, "arguments": ""}
        first = {
            "index": event.index,
            "id": convert.tool_call_id(),
            "type": "function",
            "function": call,
        }
        return {"tool_calls": [first]}
    return {"tool_calls": [{"index": event.index, "function": {"arguments": event.text}}]}


def _finish_reason(output: RequestOutput) -> str:
    """A safety rule that cut the answer reports "content_filter", as OpenAI's filter does."""
    if output.finish_reason == CONTENT_FILTER:
        return CONTENT_FILTER
    return convert.finish_reason(output)


def _text(outputs: list[RequestOutput]) -> str:
    return "".join(output.text for output in outputs)
