"""The dashboard's pages, static files, login and logout, and the session check that every
``/ui/api`` route goes through (see :mod:`hearth.server.ui.sessions`).

``GET /ui`` answers the dashboard to a logged-in admin and the login page to anyone else: no
data is ever in a page, only in ``/ui/api`` answers behind the session.
"""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hearth.errors import AuthenticationError, PermissionDeniedError, ValidationError
from hearth.server.keys import KeyInfo, KeyStore
from hearth.server.ui.sessions import (
    COOKIE,
    Session,
    SessionStore,
    check_csrf,
    check_origin,
    clear_cookie,
    set_cookie,
)

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
NOT_ADMIN = "this key is not an admin key (create one with `hearth keys create NAME --admin`)"

pages = APIRouter(prefix="/ui", include_in_schema=False)


class LoginRequest(BaseModel):
    key: str = Field(min_length=1, max_length=200)


def sessions_of(app: FastAPI) -> SessionStore:
    store: SessionStore = app.state.ui_sessions
    return store


async def current_session(request: Request) -> Session | None:
    """The request's session if its key is still an active admin key; a dead one is closed."""
    store = sessions_of(request.app)
    session_id = request.cookies.get(COOKIE)
    session = store.get(session_id)
    if session is None:
        return None
    try:
        info = await _verify_admin(request, session.secret)
    except (AuthenticationError, PermissionDeniedError):
        store.close(session_id)
        return None
    request.state.key = info
    return session


async def admin_session(request: Request) -> Session:
    """Dependency of every ``/ui/api`` route but login: 401 without a live session, 403 for a
    state-changing request without the session's CSRF token."""
    session = sessions_of(request.app).get(request.cookies.get(COOKIE))
    if session is None:
        raise AuthenticationError("not logged in to the dashboard")
    check_csrf(request, session)  # before any database work
    live = await current_session(request)
    if live is None:
        raise AuthenticationError("the dashboard session ended (its key was revoked or expired)")
    return live


async def _verify_admin(request: Request, secret: str) -> KeyInfo:
    keys: KeyStore = request.app.state.keys
    info = await asyncio.to_thread(keys.verify, secret)
    if not info.admin:
        raise PermissionDeniedError(NOT_ADMIN)
    return info


@pages.get("")
@pages.get("/")
async def page(request: Request) -> Response:
    name = "index.html" if await current_session(request) is not None else "login.html"
    return _static_response(name)


@pages.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in _static_files():
        return Response("not found", status_code=404, media_type="text/plain")
    return _static_response(name)


@pages.post("/api/login")
async def login(body: LoginRequest, request: Request) -> Response:
    check_origin(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        # A cross-site form cannot send JSON without a preflight, so no login CSRF either.
        raise ValidationError("content-type", request.headers.get("content-type"), "must be JSON")
    info = await _verify_admin(request, body.key.strip())
    session_id, session = sessions_of(request.app).open(info.name, body.key.strip())
    response = JSONResponse({"name": info.name, "csrf": session.csrf})
    set_cookie(request, response, session_id)
    return response


@pages.get("/api/session")
async def session_info(session: Session = Depends(admin_session)) -> dict[str, str]:
    """Who is logged in, and the CSRF token the page sends with every change."""
    return {"name": session.key_name, "csrf": session.csrf}


@pages.post("/api/logout")
async def logout(request: Request, session: Session = Depends(admin_session)) -> Response:
    sessions_of(request.app).close(request.cookies.get(COOKIE))
    response = Response(status_code=204)
    clear_cookie(request, response)
    return response


@cache
def _static_files() -> dict[str, tuple[bytes, str]]:
    """The shipped files, read once: only these names are ever served."""
    files = {}
    for path in STATIC_DIR.iterdir():
        if path.suffix in CONTENT_TYPES and path.is_file():
            files[path.name] = (path.read_bytes(), CONTENT_TYPES[path.suffix])
    return files


def _static_response(name: str) -> Response:
    body, media_type = _static_files()[name]
    return Response(body, media_type=media_type)
