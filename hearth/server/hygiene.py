"""Network hygiene for every response: the Host-header check against DNS rebinding, and
``X-Content-Type-Options: nosniff``.

DNS rebinding: a page on ``evil.example`` re-points its name at 127.0.0.1 and then talks to
a loopback server as "same origin". The browser still sends ``Host: evil.example``, so the
server answers only Host names it knows: loopback names and addresses, the address it is bound
to, and ``HEARTH_ALLOWED_HOSTS`` (``*`` accepts any). Anything else gets 421 with an OpenAI
error object before any route, key check or model runs. A request with no Host header (HTTP/1.0)
cannot come from a browser and passes.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so that streamed bodies pass through as they
are produced.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.config import Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
MISDIRECTED = 421


def bind_host(settings: Settings) -> str:
    """The address part of HEARTH_HOST ("127.0.0.1", "::1", "0.0.0.0"), lower case."""
    address, _, _ = settings.host.rpartition(":")
    return address.strip("[]").lower()


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The Host names this server answers besides loopback ones: its bind address (unless
    that is a wildcard, which no client types) and HEARTH_ALLOWED_HOSTS."""
    bound = bind_host(settings)
    extra = {bound} if bound not in WILDCARD_BINDS else set()
    return frozenset(extra | set(settings.allowed_hosts))


def host_name(header: str) -> str:
    """``Host`` without its port, lower case; IPv6 brackets dropped."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    name, colon, port = header.rpartition(":")
    return name if colon and port.isdigit() else header


def is_loopback_host(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    if is_loopback_host(name):
        return True
    for entry in allowed:
        if entry == "*" or entry == name:
            return True
        if entry.startswith("*.") and name.endswith(entry[1:]):
            return True
    return False


class NetworkHygiene:
    """ASGI middleware: refuse unknown Host names (421), add ``nosniff`` to every response."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; there are no websocket routes
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"host")
        if header is not None and not host_allowed(host_name(header), self.allowed):
            await _refuse(send, host_name(header))
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(key.lower() == b"x-content-type-options" for key, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _refuse(send: Send, name: str) -> None:
    message = (
        f"this server does not answer for host {name[:100]!r}; add it to HEARTH_ALLOWED_HOSTS"
        " if clients reach the server by that name"
    )
    error = {"message": message, "type": "invalid_request_error", "param": None}
    body = json.dumps({"error": {**error, "code": "invalid_host"}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": MISDIRECTED,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
