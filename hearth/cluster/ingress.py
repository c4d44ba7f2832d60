"""The ingress's forwarding: generation requests go to the model's deployment, the rest stays.

The ingress is the single-machine app (``create_app``) with routes for the generating endpoints
put in front of its own: after the app's middleware and its authentication, the request body is
read once, the model picked from it, and the request handed to that model's deployment through
its DeploymentHandle (the custom request router picks the replica from the prompt). The replica
answers with the exact bytes the single-machine server would send, SSE or NDJSON, streamed.

Failover, at the ingress:

- A replica that dies (or is unreachable) before the response's first body byte reached the
  client: the request is sent again, to another replica, up to :data:`ATTEMPTS` times. Nothing
  was generated for the client yet, and a dead replica never wrote a usage row for it.
- A replica that dies while a stream is under way: the stream ends with an error event in the
  API's own form (OpenAI ``data: {"error": ...}``, Ollama ``{"error": ...}``, Anthropic
  ``event: error``), and the ingress writes the usage row the replica could not: status
  ``error``, the outputs streamed so far as completion tokens (one token per output), prompt
  tokens 0 (only the replica knew them).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from hearth.cluster.deployment import REPLICA_HEADER, ForwardedRequest, ResponseHead
from hearth.errors import HearthError, InvalidNameError
from hearth.server.auth import presented_secret
from hearth.server.errors import anthropic_error, ollama_error, openai_error
from hearth.server.keys import KeyInfo, KeyStore
from hearth.server.streaming import LeasedStream
from hearth.server.usage import UsageLog, UsageRecord
from hearth.store.names import parse_name

Api = Literal["openai", "ollama", "anthropic"]
GENERATION_ROUTES: Mapping[str, Api] = {
    "/v1/chat/completions": "openai",
    "/v1/completions": "openai",
    "/api/generate": "ollama",
    "/api/chat": "ollama",
    "/v1/messages": "anthropic",
}
ATTEMPTS = 4
ATTEMPTS_HEADER = "x-hearth-attempts"  # how many replicas were tried
RETRY_DELAY = 0.25  # seconds before the first retry; doubled each time
ROUTING_TEXT_CHARS = 1024  # the router keys on the start of the prompt only


def install_forwarding(app: FastAPI, handles: Mapping[str, Any]) -> None:
    """Put forwarding routes for :data:`GENERATION_ROUTES` before the app's own. They run
    without the app-wide ``authenticate`` dependency: the replica checks the key and admits
    the request against the (shared) quotas, once; admitting here too would count it twice."""
    forwarder = Forwarder({_canonical(name): handle for name, handle in handles.items()})
    routes = [
        APIRoute(path, forwarder.forward, methods=["POST"], include_in_schema=False)
        for path in GENERATION_ROUTES
    ]
    app.router.routes[0:0] = routes


@dataclass(frozen=True)
class _Opened:
    head: ResponseHead
    first: bytes | None  # None: the body was empty
    rest: Any  # the DeploymentResponseGenerator, positioned after ``first``
    attempts: int  # 1, or more when replicas died before answering


class Forwarder:
    def __init__(self, handles: Mapping[str, Any]) -> None:
        self._handles = handles

    async def forward(self, request: Request) -> Response:
        api = GENERATION_ROUTES[request.url.path]
        body = await request.body()
        model, text = _model_and_text(body)
        settings = request.app.state.settings
        model = settings.aliases.get(model, model) if model else model
        handle = self._handle_for(model)
        if handle is None:
            await _check_key(request)  # only a client with a key learns what is served
            served = ", ".join(sorted(self._handles))
            return _error(api, 404, f"model {model!r} is not served by this cluster ({served})")
        call = ForwardedRequest(
            method=request.method,
            path=request.url.path,
            query_string=request.url.query.encode(),
            headers=tuple(request.headers.raw),
            body=body,
            routing_text=text[:ROUTING_TEXT_CHARS],
        )
        try:
            opened = await _open(handle, call)
        except _ReplicasFailed as failure:
            return _error(api, 503, f"no replica could take the request: {failure}")
        except Exception as error:  # the replica raised (its model could not be pulled, ...)
            return _error(api, 503, f"the replica failed: {_describe(error)}")
        cut = _CutStream(request, api, model or "", request.url.path)
        stack = AsyncExitStack()
        stack.callback(opened.rest.cancel)  # a no-op once the stream has ended
        # LeasedStream: the replica's work is cancelled however the response ends, also when
        # the client leaves before the body starts.
        response = LeasedStream(_relay(opened, api, cut), "application/octet-stream", stack)
        response.status_code = opened.head.status
        response.raw_headers = [
            *[(k, v) for k, v in opened.head.headers if k.lower() != REPLICA_HEADER.encode()],
            (REPLICA_HEADER.encode(), opened.head.replica.encode()),
            (ATTEMPTS_HEADER.encode(), str(opened.attempts).encode()),
        ]
        return response

    def _handle_for(self, model: str | None) -> Any:
        if model is None:  # no readable model: any replica answers with the app's own 4xx
            return next(iter(self._handles.values()))
        return self._handles.get(_canonical(model))


class _ReplicasFailed(Exception):
    pass


async def _check_key(request: Request) -> KeyInfo | None:
    """The request's key (AuthenticationError if keys are in use and it has no valid one)."""
    keys: KeyStore = request.app.state.keys
    if not await asyncio.to_thread(keys.any_created):
        return None
    return await asyncio.to_thread(keys.verify, presented_secret(request))


def _retryable() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return (RayActorError, ActorDiedError, ActorUnavailableError)


async def _open(handle: Any, call: ForwardedRequest) -> _Opened:
    """Send ``call`` and wait for its first body chunk, retrying on another replica while the
    replica dies before sending one."""
    last: BaseException | None = None
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
        stream = handle.options(stream=True).forward.remote(call)
        head: ResponseHead | None = None
        try:
            head = await stream.__anext__()
            first = await _next_chunk(stream)
            assert isinstance(head, ResponseHead)
            return _Opened(head, first, stream, attempt + 1)
        except _retryable() as error:
            last = error
            if head is not None:  # it died after answering: avoid it next time
                call = replace(call, avoid=call.avoid | {head.replica})
    raise _ReplicasFailed(f"{ATTEMPTS} attempts, the last: {_describe(last)}")


async def _next_chunk(stream: Any) -> bytes | None:
    try:
        chunk = await stream.__anext__()
    except StopAsyncIteration:
        return None
    assert isinstance(chunk, bytes)
    return chunk


class _CutStream:
    """Writes the usage row of a stream its replica could not finish."""

    def __init__(self, request: Request, api: Api, model: str, endpoint: str) -> None:
        self._usage: UsageLog = request.app.state.usage
        self._request = request
        self._api = api
        self._model = model
        self._endpoint = endpoint
        self._started = time.monotonic()
        self.outputs = 0

    def count(self, chunk: bytes) -> None:
        self.outputs += count_outputs(self._api, chunk)

    async def record(self, error: str) -> None:
        try:
            key = await _check_key(self._request)
        except HearthError:  # revoked meanwhile: the row still counts, without a key
            key = None
        self._usage.record(
            UsageRecord(
                request_id=f"cluster-{uuid.uuid4().hex}",
                key_name=key.name if key is not None else None,
                model=self._model,
                endpoint=self._endpoint,
                prompt_tokens=0,  # only the replica knew them
                completion_tokens=self.outputs,
                duration_ms=(time.monotonic() - self._started) * 1000,
                status="error",
                error=error,
            )
        )


async def _relay(opened: _Opened, api: Api, cut: _CutStream) -> AsyncGenerator[bytes, None]:
    """The body: the first chunk, then the rest; an error event if the replica dies."""
    try:
        if opened.first is not None:
            cut.count(opened.first)
            yield opened.first
        async for chunk in opened.rest:
            cut.count(chunk)
            yield chunk
    except _retryable() as error:
        message = f"replica {opened.head.replica} failed mid-stream: {_describe(error)}"
        await cut.record(message)
        yield error_event(api, message)


def error_event(api: Api, message: str) -> bytes:
    """A stream's last event when its replica died, in the API's own error form."""
    if api == "ollama":
        return (json.dumps({"error": message}) + "\n").encode()
    if api == "anthropic":
        body = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()
    error = {"message": message, "type": "server_error", "param": None, "code": "replica_failed"}
    return f"data: {json.dumps({'error': error})}\n\ndata: [DONE]\n\n".encode()


def count_outputs(api: Api, chunk: bytes) -> int:
    """Engine outputs (one token each) in a chunk of a streamed answer."""
    if api == "ollama":
        return chunk.count(b'"done":')  # one NDJSON line per output
    if api == "anthropic":
        return chunk.count(b"event: content_block_delta")
    return chunk.count(b'"finish_reason":')  # one choice per output


def _model_and_text(body: bytes) -> tuple[str | None, str]:
    """The model a generation request names and the start of its prompt ("" if none)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        return None, ""
    return payload["model"], _prompt_text(payload)


def _prompt_text(payload: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("system", "prompt"):
        value = payload.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [v for v in value if isinstance(v, str)]
    for message in payload.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


def _canonical(model: str) -> str:
    try:
        return parse_name(model).full
    except InvalidNameError:
        return model


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    error = getattr(error, "cause", None) or error  # a RayTaskError wraps the replica's error
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"[:300]


def _error(api: Api, status: int, message: str) -> Response:
    if api == "ollama":
        return ollama_error(status, message)
    if api == "anthropic":
        return anthropic_error(status, message)
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return openai_error(status, message, type_=type_)
