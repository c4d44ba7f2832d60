"""What route handlers share: the model manager, leases on loaded models, the engine bridge."""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractContextManager, AsyncExitStack, aclosing, asynccontextmanager
from typing import TypeVar

from fastapi import Request

from hearth.config import Settings
from hearth.engine.engine import Generation
from hearth.engine.llm import ModelView
from hearth.engine.manager import ModelManager
from hearth.engine.request import Request as EngineRequest
from hearth.engine.request import RequestOutput
from hearth.errors import ContentFilteredError, HearthError
from hearth.safety import Gate, SafetyService
from hearth.server import tenancy
from hearth.server.auth import check_model, key_name
from hearth.server.embedders import EmbedderPool
from hearth.server.licenses_api import check_license
from hearth.server.metrics import Metrics, Observation
from hearth.server.quotas import metered, note_usage
from hearth.server.usage import UsageLog, UsageRecord, UsageStatus

T = TypeVar("T")


def manager_of(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


def local_name(request: Request, name: str) -> str:
    """The local model behind ``name``: hearth.toml's [aliases] map a hosted model's name
    (say "gpt-4o-mini") to a local one; other names are local names already."""
    settings: Settings = request.app.state.settings
    return settings.aliases.get(name, name)


def requested_model(request: Request, name: str) -> str:
    """The local model a request names (aliases applied), checked against the key's scope."""
    model = local_name(request, name)
    check_model(request, model)
    check_license(request, model)  # a model the license policy denies is never loaded
    return model


def safety_gate(request: Request, model: str, endpoint: str) -> Gate:
    """The safety checks (hearth.toml [safety]) for this request's key and ``model``."""
    safety: SafetyService = request.app.state.safety
    return safety.gate(key_name(request), model, endpoint)


def embedders_of(request: Request) -> EmbedderPool:
    pool: EmbedderPool = request.app.state.embedders
    return pool


@asynccontextmanager
async def model_lease(
    manager: ModelManager, name: str, keep_alive: float | None = None
) -> AsyncIterator[ModelView]:
    """Hold ``name`` loaded for the ``async with`` block (loading it, in a thread, if needed)."""
    lease: AbstractContextManager[ModelView] = manager.acquire(name, keep_alive=keep_alive)
    llm = await asyncio.to_thread(lease.__enter__)  # may wait seconds for a load
    try:
        yield llm
    finally:
        lease.__exit__(None, None, None)  # a release is quick: no thread hop


async def lease_and_start(
    manager: ModelManager,
    name: str,
    start: Callable[[ModelView], T],
    keep_alive: float | None = None,
) -> tuple[AsyncExitStack, ModelView, T]:
    """Lease ``name`` and start work on it. The returned stack holds the lease until it is
    closed (after a stream's last byte); if loading or starting fails it is closed at once."""
    stack = AsyncExitStack()
    try:
        llm = await stack.enter_async_context(model_lease(manager, name, keep_alive))
        view = metered(tenancy.isolated(llm), stack, name)  # quota reserved before the engine
        return stack, llm, start(view)
    except BaseException:
        await stack.aclose()
        raise


async def embed_texts(
    request: Request, model: str, texts: list[str], endpoint: str
) -> tuple[list[list[float]], int]:
    """Unit vectors for ``texts`` and the tokens they took, off the event loop; counted in the
    metrics and the usage log like a generation (prompt tokens only)."""
    started = time.monotonic()
    tokens = 0
    try:
        embedder = await asyncio.to_thread(embedders_of(request).get, model)
        tokens = sum(await asyncio.to_thread(lambda: [embedder.count_tokens(t) for t in texts]))
        vectors = await asyncio.to_thread(embedder.embed, texts)
    except HearthError as error:
        record_encoder_use(request, model, endpoint, tokens, started, error)
        raise
    record_encoder_use(request, model, endpoint, tokens, started, None)
    return vectors, tokens


def record_encoder_use(
    request: Request,
    model: str,
    endpoint: str,
    tokens: int,
    started: float,
    error: HearthError | None,
) -> None:
    """Metrics and a usage row for an encoder request (embeddings, rerank): what every
    generation gets through :func:`observe`, with prompt tokens only."""
    status: UsageStatus = "ok" if error is None else "error"
    metrics: Metrics = request.app.state.metrics
    metrics.requests.labels(model, endpoint, status).inc()
    metrics.prompt_tokens.labels(model).inc(tokens)
    usage: UsageLog = request.app.state.usage
    usage.record(
        UsageRecord(
            request_id=f"enc-{uuid.uuid4().hex}",
            key_name=key_name(request),
            model=model,
            endpoint=endpoint,
            prompt_tokens=tokens,
            completion_tokens=0,
            cached_tokens=0,
            ttft_ms=None,
            duration_ms=(time.monotonic() - started) * 1000,
            status=status,
            error=None if error is None else str(error),
        )
    )


def _drain(outputs: queue.Queue[RequestOutput]) -> list[RequestOutput]:
    batch = []
    while True:
        try:
            batch.append(outputs.get_nowait())
        except queue.Empty:
            return batch


async def stream_outputs(
    generation: Generation, observation: Observation | None = None
) -> AsyncGenerator[RequestOutput, None]:
    """The generation's outputs, read on the event loop without parking a thread per stream:
    the engine thread sets an asyncio event after each output. Closing this iterator early
    (the client went away) aborts the request, which frees its KV cells."""
    request = generation.request
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()

    def notify() -> None:
        loop.call_soon_threadsafe(ready.set)

    request.notify = notify
    finished: RequestOutput | None = None
    error: BaseException | None = None
    filtered = False
    try:
        while finished is None:
            ready.clear()  # before draining, so an output queued meanwhile sets it again
            batch = _drain(request.outputs)
            if not batch:
                await ready.wait()
                continue
            for output in batch:
                if output.error is not None:
                    error = output.error
                    raise output.error
                if output.finished:
                    finished = output
                if observation is not None:
                    observation.output(request.timings.queued)
                yield output
    except ContentFilteredError:  # the safety gate stopped the answer (thrown in at a yield)
        filtered = True
    finally:
        request.notify = None
        if finished is None:
            generation.abort()
        if observation is not None:
            status = "filtered" if filtered else _status(finished, error)
            observation.done(request, status, str(error) if error else None)


def _status(finished: RequestOutput | None, error: BaseException | None) -> str:
    if error is not None or (finished is not None and finished.finish_reason == "error"):
        return "error"
    if finished is None or finished.finish_reason == "abort":
        return "aborted"  # the client left, or a deadline passed: what was made still counts
    return "ok"


async def collect(
    generation: Generation, observation: Observation | None = None
) -> list[RequestOutput]:
    outputs = stream_outputs(generation, observation)
    async with aclosing(outputs):
        return [output async for output in outputs]


def observe(request: Request, model: str, endpoint: str) -> Observation:
    """Metrics and a usage record for one generation of this HTTP request."""
    metrics: Metrics = request.app.state.metrics
    usage: UsageLog = request.app.state.usage
    key = key_name(request)

    def record(
        engine_request: EngineRequest, model: str, endpoint: str, status: str, error: str | None
    ) -> None:
        timings = engine_request.timings
        end = timings.finished or time.monotonic()
        first = timings.first_token
        usage.record(
            UsageRecord(
                request_id=str(engine_request.request_id),
                key_name=key,
                model=model,
                endpoint=endpoint,
                prompt_tokens=len(engine_request.prompt_tokens),
                completion_tokens=len(engine_request.output_tokens),
                cached_tokens=engine_request.cached_tokens,
                ttft_ms=None if first is None else (first - timings.queued) * 1000,
                duration_ms=(end - timings.queued) * 1000,
                status=status,  # type: ignore[arg-type]
                error=error,
            )
        )
        used = len(engine_request.prompt_tokens) + len(engine_request.output_tokens)
        note_usage(request, model, used)  # settles the request's quota reservation

    return Observation(metrics, model, endpoint, record)
