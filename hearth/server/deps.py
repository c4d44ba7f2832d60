"""What route handlers share: the model manager, leases on loaded models, the engine bridge."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager

from fastapi import Request

from hearth.engine.engine import Generation
from hearth.engine.llm import LLM
from hearth.engine.manager import ModelManager
from hearth.engine.request import RequestOutput
from hearth.server.embedders import EmbedderPool
from hearth.server.metrics import Metrics, Observation


def manager_of(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


def embedders_of(request: Request) -> EmbedderPool:
    pool: EmbedderPool = request.app.state.embedders
    return pool


@asynccontextmanager
async def model_lease(
    manager: ModelManager, name: str, keep_alive: float | None = None
) -> AsyncIterator[LLM]:
    """Hold ``name`` loaded for the ``async with`` block (loading it, in a thread, if needed)."""
    lease: AbstractContextManager[LLM] = manager.acquire(name, keep_alive=keep_alive)
    llm = await asyncio.to_thread(lease.__enter__)  # may wait seconds for a load
    try:
        yield llm
    finally:
        lease.__exit__(None, None, None)  # a release is quick: no thread hop


def _drain(outputs: queue.Queue[RequestOutput]) -> list[RequestOutput]:
    batch = []
    while True:
        try:
            batch.append(outputs.get_nowait())
        except queue.Empty:
            return batch


async def stream_outputs(
    generation: Generation, observation: Observation | None = None
) -> AsyncIterator[RequestOutput]:
    """The generation's outputs, read on the event loop without parking a thread per stream:
    the engine thread sets an asyncio event after each output. Closing this iterator early
    (the client went away) aborts the request, which frees its KV cells."""
    request = generation.request
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()

    def notify() -> None:
        loop.call_soon_threadsafe(ready.set)

    request.notify = notify
    finished = False
    try:
        while not finished:
            ready.clear()  # before draining, so an output queued meanwhile sets it again
            batch = _drain(request.outputs)
            if not batch:
                await ready.wait()
                continue
            for output in batch:
                if output.error is not None:
                    raise output.error
                finished = output.finished
                if observation is not None:
                    observation.output(output, request.timings.queued)
                yield output
    finally:
        request.notify = None
        if not finished:
            generation.abort()
            if observation is not None:  # the tokens made before the client left still count
                observation.finish(len(request.prompt_tokens), len(request.output_tokens), "abort")


async def collect(
    generation: Generation, observation: Observation | None = None
) -> list[RequestOutput]:
    return [output async for output in stream_outputs(generation, observation)]


def observe(request: Request, model: str, endpoint: str) -> Observation:
    metrics: Metrics = request.app.state.metrics
    return Observation(metrics, model, endpoint)
