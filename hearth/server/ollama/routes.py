"""Ollama-compatible routes under /api: generate, chat (NDJSON streams), tags, show, ps,
version, pull, copy, delete."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hearth import __version__
from hearth.engine.engine import Generation
from hearth.engine.manager import ModelManager
from hearth.safety import CONTENT_FILTER, Gate
from hearth.server.deps import (
    embed_texts,
    lease_and_start,
    manager_of,
    model_lease,
    observe,
    requested_model,
    safety_gate,
    stream_outputs,
)
from hearth.server.errors import ollama_error
from hearth.server.metrics import Observation
from hearth.server.ollama import convert
from hearth.server.ollama.schemas import (
    ChatRequest,
    CopyRequest,
    EmbedRequest,
    GenerateRequest,
    ModelRequest,
)
from hearth.server.streaming import LeasedStream
from hearth.units import parse_keep_alive

router = APIRouter(prefix="/api")

Shape = Callable[[str], dict[str, Any]]  # text delta → the route's response fields


@router.get("/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.post("/generate", response_model=None)
async def generate(body: GenerateRequest, request: Request) -> Any:
    body = body.model_copy(update={"model": requested_model(request, body.model)})
    manager = manager_of(request)
    keep_alive = parse_keep_alive(body.keep_alive)
    if not body.prompt and keep_alive == 0:  # Ollama's way to unload a model now
        manager.unload(body.model)
        return _done_only(body.model, "unload")
    params = convert.sampling_params(body.options, body.format)
    prompt = convert.generate_prompt(body)
    gate = safety_gate(request, body.model, "/api/generate")
    system, prompt = await gate.screen_texts([body.system or "", prompt])

    def shape(text: str) -> dict[str, Any]:
        return {"response": text}

    if not prompt:  # Ollama's way to load a model without generating
        async with model_lease(manager, body.model, keep_alive):
            return _done_only(body.model, "load")
    return await _answer(
        manager,
        body.model,
        keep_alive,
        body.stream,
        shape,
        lambda llm: llm.prompt_tokens(prompt, system=system, raw=body.raw),
        params,
        observe(request, body.model, "/api/generate"),
        gate,
    )


@router.post("/chat", response_model=None)
async def chat(body: ChatRequest, request: Request) -> Any:
    body = body.model_copy(update={"model": requested_model(request, body.model)})
    manager = manager_of(request)
    keep_alive = parse_keep_alive(body.keep_alive)
    params = convert.sampling_params(body.options, body.format)
    gate = safety_gate(request, body.model, "/api/chat")
    messages = await gate.screen_messages(convert.chat_messages(body))
    tools = body.tools or None
    if not messages:
        async with model_lease(manager, body.model, keep_alive):
            return _done_only(body.model, "load", {"message": {"role": "assistant", "content": ""}})

    def shape(text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}}

    return await _answer(
        manager,
        body.model,
        keep_alive,
        body.stream,
        shape,
        lambda llm: llm.conversation_tokens(messages, tools),
        params,
        observe(request, body.model, "/api/chat"),
        gate,
        with_tools=tools is not None,
    )


async def _answer(
    manager: ModelManager,
    model: str,
    keep_alive: float | None,
    stream: bool,
    shape: Shape,
    tokens_for: Callable[[Any], list[int]],
    params: Any,
    observation: Observation,
    gate: Gate,
    *,
    with_tools: bool = False,
) -> Any:
    stack, _, generations = await lease_and_start(
        manager, model, lambda llm: llm.generate(tokens_for(llm), params), keep_alive
    )
    generation = generations[0]
    lines = _lines(model, generation, shape, observation, gate)
    if with_tools:
        lines = _with_tool_calls(lines)
    if stream:

        async def body() -> AsyncGenerator[bytes, None]:
            # aclosing: a client that leaves closes every layer of generators at once.
            async with stack, aclosing(lines):
                async for line in lines:
                    yield (json.dumps(line) + "\n").encode()

        return LeasedStream(body(), "application/x-ndjson", stack)
    async with stack, aclosing(lines):
        parts = [line async for line in lines]
    final = parts[-1]
    text = "".join(_text_of(p) for p in parts)
    answer = {**final, **shape(text)}
    calls = final.get("message", {}).get("tool_calls")
    if calls:
        answer["message"]["tool_calls"] = calls
    return JSONResponse(answer)


async def _with_tool_calls(
    lines: AsyncGenerator[dict[str, Any], None],
) -> AsyncGenerator[dict[str, Any], None]:
    """Chat lines whose content leaves out tool calls; the calls, whole, on the last line."""
    collector = convert.ToolCallCollector()
    async with aclosing(lines):
        async for line in lines:
            message = line["message"]
            message["content"] = collector.content(message["content"])
            if line["done"]:
                tail, calls = collector.finish()
                message["content"] += tail
                if calls:
                    message["tool_calls"] = calls
            yield line


async def _lines(
    model: str, generation: Generation, shape: Shape, observation: Observation, gate: Gate
) -> AsyncGenerator[dict[str, Any], None]:
    started = time.monotonic_ns()
    first: int | None = None
    outputs = gate.outputs(stream_outputs(generation, observation))
    async with aclosing(outputs):
        async for output in outputs:
            first = first or time.monotonic_ns()
            line: dict[str, Any] = {
                "model": model,
                "created_at": convert.timestamp(),
                **shape(output.text),
                "done": False,
            }
            if output.finished:
                line.update(convert.final_fields(output, started, first, time.monotonic_ns()))
                if output.finish_reason == CONTENT_FILTER:  # a safety rule cut the answer
                    line["done_reason"] = CONTENT_FILTER
            yield line


def _text_of(line: dict[str, Any]) -> str:
    if "response" in line:
        return str(line["response"])
    return str(line["message"]["content"])


def _done_only(model: str, reason: str, extra: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(
        {
            "model": model,
            "created_at": convert.timestamp(),
            "response": "",
            "done": True,
            "done_reason": reason,
            **(extra or {}),
        }
    )


@router.post("/embed")
async def embed(body: EmbedRequest, request: Request) -> dict[str, Any]:
    body = body.model_copy(update={"model": requested_model(request, body.model)})
    vectors, tokens = await embed_texts(request, body.model, body.texts(), "/api/embed")
    return {"model": body.model, "embeddings": vectors, "prompt_eval_count": tokens}


@router.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    return {"models": [convert.tag_entry(m) for m in manager_of(request).store.list()]}


@router.post("/show")
async def show(body: ModelRequest, request: Request) -> dict[str, Any]:
    store = manager_of(request).store
    return convert.show_response(store, store.resolve(body.target()))


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    manager = manager_of(request)
    models = []
    for status in manager.loaded():
        local = status.model
        expires = status.expires_in
        models.append(
            {
                "name": status.name,
                "model": status.name,
                "size": status.memory.total,
                "digest": local.manifest_digest.split(":", 1)[1],
                "details": convert.details(local),
                "expires_at": _expires_at(expires),
                "size_vram": 0,
                "context_length": status.context,
            }
        )
    return {"models": models}


def _expires_at(expires_in: float | None) -> str:
    if expires_in is None or expires_in == float("inf"):
        return "2318-01-01T00:00:00Z"  # what Ollama reports for "kept forever"
    seconds = time.time() + expires_in
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@router.post("/pull", response_model=None)
async def pull(body: ModelRequest, request: Request) -> Any:
    store = manager_of(request).store
    name = body.target()
    progress: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def report(done: int, total: int | None) -> None:
        line = {"status": f"pulling {name}", "completed": done, "total": total or done}
        loop.call_soon_threadsafe(progress.put_nowait, line)

    pulling = functools.partial(store.pull, name, report, insecure=body.insecure)
    task = asyncio.ensure_future(asyncio.to_thread(pulling))
    task.add_done_callback(lambda _: loop.call_soon_threadsafe(progress.put_nowait, None))
    if not body.stream:
        await task
        return {"status": "success"}

    async def lines() -> AsyncIterator[bytes]:
        yield b'{"status":"pulling manifest"}\n'
        while (line := await progress.get()) is not None:
            yield (json.dumps(line) + "\n").encode()
        error = task.exception()
        final = {"error": str(error)} if error else {"status": "success"}
        yield (json.dumps(final) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/copy")
async def copy(body: CopyRequest, request: Request) -> JSONResponse:
    manager_of(request).store.copy(body.source, body.destination)
    return JSONResponse({})


@router.delete("/delete")
async def delete(body: ModelRequest, request: Request) -> JSONResponse:
    """Unload the model, then delete it; refused (409) while requests are using it."""
    manager = manager_of(request)
    name = body.target()
    manager.unload(name)  # now if idle, else as soon as its last request finishes
    users = manager.users(name)
    if users:
        message = (
            f"{name} is in use by {users} request(s) and was not deleted; it unloads when they "
            "finish, then delete it again"
        )
        return ollama_error(409, message)
    manager.store.remove(name)
    return JSONResponse({})
