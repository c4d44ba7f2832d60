"""Session store logic: expiry, the cap on sessions, the cookie's flags over https."""

from __future__ import annotations

from fastapi import Request, Response

from hearth.server.ui import sessions
from hearth.server.ui.sessions import SESSION_SECONDS, SessionStore, set_cookie


def test_sessions_expire_and_close() -> None:
    now = [1000.0]
    store = SessionStore(clock=lambda: now[0])
    session_id, session = store.open("ops", "hth_secret")
    assert store.get(session_id) == session
    assert store.get("someone-elses") is None and store.get(None) is None
    now[0] += SESSION_SECONDS
    assert store.get(session_id) is None
    other, _ = store.open("ops", "hth_secret")
    store.close(other)
    assert store.get(other) is None and len(store) == 0


def test_old_sessions_make_room() -> None:
    store = SessionStore()
    first, _ = store.open("ops", "s")
    for _ in range(sessions.MAX_SESSIONS):
        store.open("ops", "s")
    assert len(store) == sessions.MAX_SESSIONS and store.get(first) is None


def test_cookie_is_secure_over_https() -> None:
    scope = {
        "type": "http",
        "scheme": "https",
        "server": ("hearth.example", 443),
        "path": "/ui/api/login",
        "headers": [(b"host", b"hearth.example")],
    }
    response = Response()
    set_cookie(Request(scope), response, "abc")
    header = response.headers["set-cookie"].lower()
    assert "secure" in header and "httponly" in header and "samesite=strict" in header
