"""API-key checks for every route but /health.

Keys are required as soon as one key has been created (`hearth keys create`), and stay required
after it is revoked or expires. A client sends it as
``Authorization: Bearer <key>`` (OpenAI and Ollama clients) or ``x-api-key: <key>``. The key's
model scope is checked by the routes, which know the model (:func:`check_model`).
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from hearth.errors import PermissionDeniedError
from hearth.server import tenancy
from hearth.server.keys import KeyInfo, KeyStore
from hearth.server.quotas import admit

OPEN_PATHS = frozenset({"/health"})
DASHBOARD_PREFIX = "/ui"  # its pages and /ui/api check their own session cookie (hearth/server/ui)


def presented_secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request) -> None:
    """FastAPI dependency: sets ``request.state.key`` (None when keys are not in use)."""
    request.state.key = None
    path = request.url.path
    if path in OPEN_PATHS or path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/"):
        return
    keys: KeyStore = request.app.state.keys
    if not await _keys_required(request, keys):
        return
    request.state.key = await asyncio.to_thread(keys.verify, presented_secret(request))
    tenancy.enter(request.state.key)  # its own prefix cache
    await admit(request, request.state.key)  # rate limits, quotas, budgets (429)


async def _keys_required(request: Request, keys: KeyStore) -> bool:
    """Keys are never deleted (only revoked), so once one exists it always will: remember that
    and skip the database query on every later request."""
    if getattr(request.app.state, "keys_required", False):
        return True
    required = await asyncio.to_thread(keys.any_created)
    request.app.state.keys_required = required
    return required


def check_model(request: Request, model: str) -> None:
    key: KeyInfo | None = getattr(request.state, "key", None)
    if key is not None:
        keys: KeyStore = request.app.state.keys
        keys.check_model(key, model)


def require_admin(request: Request, action: str) -> None:
    """Refuse ``action`` to a key without the admin flag (once keys are in use): what it does
    reaches beyond one model, e.g. training on a file of the server's machine."""
    key: KeyInfo | None = getattr(request.state, "key", None)
    if key is not None and not key.admin:
        raise PermissionDeniedError(f"{action} needs an admin key (hearth keys create --admin)")


def key_name(request: Request) -> str | None:
    key: KeyInfo | None = getattr(request.state, "key", None)
    return key.name if key is not None else None
