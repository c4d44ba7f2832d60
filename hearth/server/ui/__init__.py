"""The web dashboard at ``/ui``: static pages shipped in the package (``static/``), JSON panels
under ``/ui/api`` behind an admin session (see ``docs/DASHBOARD.md``)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from hearth.server.ui.sessions import SessionStore

# No inline script or style, nothing from another origin: an injected tag can run nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

__all__ = ["CONTENT_SECURITY_POLICY", "install_dashboard"]


def is_dashboard_path(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


def install_dashboard(app: FastAPI) -> None:
    """Mount /ui on ``app``: its routers, its session store and its security headers."""
    from hearth.server.ui.api import router as api_router
    from hearth.server.ui.keys_api import router as keys_router
    from hearth.server.ui.routes import pages

    app.state.ui_sessions = SessionStore()
    app.include_router(pages)
    app.include_router(api_router)
    app.include_router(keys_router)

    @app.middleware("http")
    async def dashboard_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if is_dashboard_path(request.url.path):
            response.headers.update(SECURITY_HEADERS)
        return response
