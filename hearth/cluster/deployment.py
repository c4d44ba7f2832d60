"""One replica of a model's Ray Serve deployment: a whole Hearth server, in process.

Each replica runs the single-machine app (``hearth.server.app.create_app``: auth, policy,
safety, quotas, usage, the OpenAI/Ollama/Anthropic routes) on its own ModelManager and its own
node's store, and answers the HTTP requests the ingress forwards to it through a
DeploymentHandle. The request goes through the app as an ASGI call (no socket), and the response
comes back as a stream: one :class:`ResponseHead`, then the body chunks as the app sends them,
so a streamed answer keeps its exact bytes (SSE or NDJSON) and its pace.

Usage rows are written by the replica's app to the shared database (HEARTH_DATABASE_URL,
PostgreSQL: SQLite cannot be shared across nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import FastAPI

from hearth.cluster.distribution import ensure_model
from hearth.config import Settings
from hearth.engine.manager import ModelManager

REPLICA_HEADER = "x-hearth-replica"
STATS_INTERVAL = 2.0  # seconds between a replica's reports to the status board
_Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica needs from the driver; everything else comes from its own node."""

    model: str
    threads: int
    database_url: str  # shared by every node (PostgreSQL); "" keeps SQLite per node
    registry: str  # host:port replicas pull from; "" pulls catalogue names from their source
    max_seqs: int = 16


@dataclass(frozen=True)
class ForwardedRequest:
    """An HTTP request as the ingress received it, plus what the router looks at."""

    method: str
    path: str
    query_string: bytes
    headers: _Headers
    body: bytes
    routing_text: str = ""  # the prompt (or its start), for prefix-aware routing
    avoid: frozenset[str] = field(default_factory=frozenset)  # replicas that failed it


@dataclass(frozen=True)
class ResponseHead:
    status: int
    headers: _Headers
    replica: str  # the replica's id (also sent to the client in x-hearth-replica)


@dataclass(frozen=True)
class ReplicaStats:
    """A replica's report to the status board (hearth/cluster/status.py)."""

    deployment: str
    replica: str
    model: str
    node_id: str
    node_ip: str
    pid: int
    ready: bool
    ongoing: int  # HTTP requests in flight on this replica
    waiting: int  # engine requests waiting for a sequence
    running: int  # engine sequences being decoded
    rss_bytes: int  # the replica process's resident memory
    model_bytes: int  # the loaded model's estimated memory
    error: str | None
    reported: float  # time.time() of the report


def replica_settings(spec: ReplicaSpec, env: dict[str, str] | None = None) -> Settings:
    """This node's settings (its HEARTH_HOME) with what the cluster decides: the shared
    database, the replica's threads, and models kept loaded (a replica serves one model)."""
    settings = Settings.from_env(env)
    return replace(
        settings,
        threads=spec.threads,
        max_seqs=spec.max_seqs,
        database_url=spec.database_url or settings.database_url,
        shared_quotas=settings.shared_quotas or bool(spec.database_url),  # one set of counters
        keep_alive=float("inf"),
    )


class ModelReplica:
    """The deployment's class (``serve.deployment`` is applied in hearth/cluster/serve.py)."""

    async def __init__(self, spec: ReplicaSpec) -> None:  # type: ignore[misc]  # Serve awaits it
        self._spec = spec
        self._settings = replica_settings(spec)
        self._app = _create_app(self._settings)
        self._lifespan: AbstractAsyncContextManager[Any] = self._app.router.lifespan_context(
            self._app
        )
        await self._lifespan.__aenter__()
        self._ongoing = 0
        self._error: str | None = None
        self._ready: asyncio.Task[None] = asyncio.create_task(self._prepare())
        self._reporter = asyncio.create_task(self._report_forever())

    @property
    def _manager(self) -> ModelManager:
        manager: ModelManager = self._app.state.manager
        return manager

    async def _prepare(self) -> None:
        """Pull the model into this node's store (when missing) and load it."""
        try:
            store = self._manager.store
            await asyncio.to_thread(ensure_model, store, self._spec.model, self._spec.registry)
            await asyncio.to_thread(self._load)
            self._error = None
        except Exception as error:
            self._error = f"{type(error).__name__}: {error}"
            raise

    def _load(self) -> None:
        with self._manager.acquire(self._spec.model):
            pass  # loaded, and kept loaded (keep_alive is infinite)

    async def _wait_ready(self) -> None:
        if self._ready.done() and self._ready.exception() is not None:
            self._ready = asyncio.create_task(self._prepare())  # try again (registry was down)
        await asyncio.shield(self._ready)

    async def forward(self, call: ForwardedRequest) -> AsyncGenerator[ResponseHead | bytes, None]:
        """Answer ``call`` with this replica's app: a ResponseHead, then body chunks."""
        self._ongoing += 1
        try:
            await self._wait_ready()
            async for item in call_app(self._app, call, replica_id()):
                yield item
        finally:
            self._ongoing -= 1

    async def stats(self) -> ReplicaStats:
        return self._stats()

    async def check_health(self) -> None:
        """Ray Serve calls this; raising makes it replace the replica."""
        dead = self._manager.dead_engines()
        if dead:
            raise RuntimeError(f"engine thread down for {', '.join(dead)}")

    async def __del__(self) -> None:
        self._reporter.cancel()
        await self._lifespan.__aexit__(None, None, None)  # flushes the usage rows

    def _stats(self) -> ReplicaStats:
        stats = self._manager.engine_stats()
        loaded = self._manager.loaded()
        context = _replica_context()
        return ReplicaStats(
            deployment=context[0],
            replica=context[1],
            model=self._spec.model,
            node_id=context[2],
            node_ip=context[3],
            pid=os.getpid(),
            ready=self._ready.done() and self._error is None,
            ongoing=self._ongoing,
            waiting=sum(s.waiting for _, s in stats),
            running=sum(s.running for _, s in stats),
            rss_bytes=resident_memory(),
            model_bytes=max((m.memory.total for m in loaded), default=0),
            error=self._error,
            reported=time.time(),
        )

    async def _report_forever(self) -> None:
        from hearth.cluster.status import board

        target = board()
        while True:
            with contextlib.suppress(Exception):  # the board may be restarting: next time
                target.report.remote(self._stats())
            await asyncio.sleep(STATS_INTERVAL)


def _create_app(settings: Settings) -> FastAPI:
    from hearth.server.app import create_app

    return create_app(settings)


def replica_id() -> str:
    return _replica_context()[1]


def _replica_context() -> tuple[str, str, str, str]:
    """(deployment, replica id, node id, node ip) of the running replica."""
    import ray
    from ray import serve

    context = serve.get_replica_context()
    runtime = ray.get_runtime_context()
    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    replica = context.replica_id.unique_id
    return context.deployment, replica, runtime.get_node_id(), node_ip


def resident_memory() -> int:
    """This process's resident set size in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


# In-process ASGI -----------------------------------------------------------------------------


async def call_app(
    app: Any, call: ForwardedRequest, replica: str
) -> AsyncIterator[ResponseHead | bytes]:
    """Run ``call`` through the ASGI ``app``; yield its head, then each body chunk as sent.
    Closing this iterator early (the client left) tells the app the client disconnected and
    waits for it to clean up (a streamed generation is aborted, its usage recorded)."""
    messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    gone = asyncio.Event()
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": call.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await messages.put(message)

    async def run() -> None:
        try:
            await app(_scope(call), receive, send)
        finally:
            await messages.put(None)

    task = asyncio.create_task(run())
    try:
        while (message := await messages.get()) is not None:
            if message["type"] == "http.response.start":
                headers = tuple((bytes(k), bytes(v)) for k, v in message.get("headers", ()))
                yield ResponseHead(int(message["status"]), headers, replica)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    break
        await task  # re-raises what the app raised
    finally:
        gone.set()
        if not task.done():
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, Exception):
                task.cancel()


def _scope(call: ForwardedRequest) -> dict[str, Any]:
    # Host is loopback: the ingress has checked the client's Host; this call never leaves
    # the process, so the replica app's Host check (DNS-rebinding defence) must accept it.
    headers = [(b"host", b"localhost")]
    headers += [(k, v) for k, v in call.headers if k.lower() != b"host"]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": call.method,
        "scheme": "http",
        "path": call.path,
        "raw_path": call.path.encode(),
        "query_string": call.query_string,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("localhost", 80),
        "state": {},
    }
