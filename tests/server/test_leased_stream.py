"""LeasedStream closes the lease however a streamed response ends, including when the client
leaves before the body has started (the body generator's own cleanup never runs then)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from hearth.server.streaming import LeasedStream


class Lease:
    def __init__(self) -> None:
        self.released = 0
        self.body_started = False

    async def stack(self) -> AsyncExitStack:
        stack = AsyncExitStack()
        stack.push_async_callback(self._release)
        return stack

    async def _release(self) -> None:
        self.released += 1

    def body(self, stack: AsyncExitStack) -> AsyncGenerator[bytes, None]:
        async def body() -> AsyncGenerator[bytes, None]:
            self.body_started = True
            async with stack:
                yield b"one\n"
                yield b"two\n"

        return body()


async def _receive() -> dict[str, Any]:
    await asyncio.sleep(3600)  # the client never says anything
    return {"type": "http.disconnect"}


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"spec_version": "2.4"}}


async def _respond(lease: Lease, send: Any) -> None:
    stack = await lease.stack()
    await LeasedStream(lease.body(stack), "application/x-ndjson", stack)(_scope(), _receive, send)


def test_a_whole_response_releases_once() -> None:
    lease, sent = Lease(), []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(_respond(lease, send))
    assert lease.released == 1
    assert b"".join(m.get("body", b"") for m in sent) == b"one\ntwo\n"


def test_a_client_gone_before_the_body_starts_still_releases() -> None:
    lease = Lease()

    async def send(message: dict[str, Any]) -> None:
        raise OSError("connection reset")  # the headers cannot even be sent

    with pytest.raises(ClientDisconnect):
        asyncio.run(_respond(lease, send))
    assert not lease.body_started
    assert lease.released == 1


def test_a_client_gone_mid_body_releases_once() -> None:
    lease, count = Lease(), []

    async def send(message: dict[str, Any]) -> None:
        count.append(message)
        if len(count) == 3:  # headers, first line, then the connection drops
            raise OSError("connection reset")

    with pytest.raises(ClientDisconnect):
        asyncio.run(_respond(lease, send))
    assert lease.body_started and lease.released == 1
