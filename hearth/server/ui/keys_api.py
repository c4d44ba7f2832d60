"""Key management for the dashboard: a page of keys at a time (fast with thousands), create
(the secret is in this one answer only), revoke."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from hearth.server.keys import KeyInfo, KeyStore
from hearth.server.ui.routes import admin_session
from hearth.units import parse_moment

MAX_PAGE = 200

router = APIRouter(prefix="/ui/api/keys", dependencies=[Depends(admin_session)])

StatusFilter = Literal["all", "active", "revoked", "expired"]


class CreateKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    models: list[str] | None = None  # None: every model
    team: str | None = Field(default=None, max_length=64)
    expires: str | None = Field(default=None, max_length=64)  # 30d, 12h, or a date
    admin: bool = False


@router.get("")
async def list_keys(
    request: Request,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
    q: str = Query("", max_length=64),
    status: StatusFilter = "all",
) -> dict[str, Any]:
    """One page of keys, newest first, filtered by a substring of name, team or prefix."""
    infos = await asyncio.to_thread(_keys(request).list)
    now = datetime.now(UTC)
    needle = q.strip().lower()
    matching = [
        info
        for info in reversed(infos)
        if (status == "all" or info.status(now) == status) and _matches(info, needle)
    ]
    return {
        "total": len(matching),
        "offset": offset,
        "limit": limit,
        "keys": [key_dict(info, now) for info in matching[offset : offset + limit]],
    }


@router.post("")
async def create_key(body: CreateKeyRequest, request: Request) -> dict[str, Any]:
    now = datetime.now(UTC)
    expires = None if not body.expires else parse_moment(body.expires, "expires", now=now)
    team = body.team.strip() or None if body.team else None
    models = [m.strip() for m in body.models if m.strip()] if body.models else None
    created = await asyncio.to_thread(
        _keys(request).create,
        body.name.strip(),
        models=models or None,
        expires=expires,
        team=team,
        admin=body.admin,
    )
    return {"secret": created.secret, "key": key_dict(created.info, now)}


@router.delete("/{name}")
async def revoke_key(name: str, request: Request) -> dict[str, Any]:
    info = await asyncio.to_thread(_keys(request).revoke, name)
    return {"key": key_dict(info, datetime.now(UTC))}


def key_dict(info: KeyInfo, now: datetime) -> dict[str, Any]:
    return {
        "name": info.name,
        "prefix": info.prefix,
        "team": info.team,
        "models": None if info.models is None else list(info.models),
        "created": info.created.isoformat(),
        "expires": None if info.expires is None else info.expires.isoformat(),
        "last_used": None if info.last_used is None else info.last_used.isoformat(),
        "status": info.status(now),
        "admin": info.admin,
    }


def _matches(info: KeyInfo, needle: str) -> bool:
    if not needle:
        return True
    return any(needle in (field or "").lower() for field in (info.name, info.team, info.prefix))


def _keys(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys
    return keys
