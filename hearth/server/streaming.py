"""A streamed response that owns its model lease.

A route leases a model, starts work, and returns a StreamingResponse whose body generator
closes the lease (an AsyncExitStack) when it ends. That is not enough on its own: a client that
leaves before the body starts (the send of the headers fails, or the task is cancelled) leaves
the generator unstarted, so its cleanup never runs and the lease (and the request) would be
held until garbage collection, if ever. :class:`LeasedStream` closes the body and then the
stack however the response ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class LeasedStream(StreamingResponse):
    def __init__(
        self, body: AsyncGenerator[bytes, None], media_type: str, stack: AsyncExitStack
    ) -> None:
        super().__init__(body, media_type=media_type)
        self._body = body
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()  # aborts the generation if it is still running
                await self._stack.aclose()  # a no-op if the body closed it already
