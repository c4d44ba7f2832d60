"""Dashboard sessions: an admin key exchanged for an HttpOnly cookie and a CSRF token.

The key itself never reaches the page's JavaScript: the login form posts it once, the server
keeps it in memory beside a random session id, and the browser holds only the id, in a cookie
that scripts cannot read (HttpOnly), that other sites cannot make it send (SameSite=Strict),
and that travels only over https when the dashboard is served over https (Secure). Each request
re-verifies the key, so revoking it (or taking its admin flag away) ends its sessions at once.

State-changing requests also carry the session's CSRF token in a header (``X-CSRF-Token``),
which only a page of this origin can read (``GET /ui/api/session``), and an ``Origin`` header,
when the browser sends one, must be this server's.

Sessions live in this process's memory: a restart logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request, Response

from hearth.errors import PermissionDeniedError

COOKIE = "hearth_ui"
COOKIE_PATH = "/ui"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 8 * 3600  # a session ends this long after login, used or not
MAX_SESSIONS = 1000  # oldest dropped first: repeated logins cannot grow memory without bound
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Clock = Callable[[], float]


@dataclass(frozen=True)
class Session:
    key_name: str
    secret: str  # the admin key, re-verified on every request; never sent to the browser
    csrf: str
    expires: float  # time.monotonic() deadline


class SessionStore:
    """Sessions by the SHA-256 of their id (a lookup by hash leaks nothing through timing)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def open(self, key_name: str, secret: str) -> tuple[str, Session]:
        """A new session for this key: its id (for the cookie) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            key_name, secret, secrets.token_urlsafe(32), self._clock() + SESSION_SECONDS
        )
        with self._lock:
            self._sessions[_digest(session_id)] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(_digest(session_id))
            if session is not None and session.expires <= self._clock():
                del self._sessions[_digest(session_id)]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def set_cookie(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def check_csrf(request: Request, session: Session) -> None:
    """PermissionDeniedError (403) for a state-changing request without this session's token."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise PermissionDeniedError("missing or wrong CSRF token (send the X-CSRF-Token header)")


def check_origin(request: Request) -> None:
    """A browser names the page that sent a POST; it must be one of this server's."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser, or a same-origin request from an old one
        return
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin != expected:
        raise PermissionDeniedError(f"cross-origin request refused (Origin: {origin})")
