"""The FastAPI application: routes, error handlers, and the model manager's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hearth import __version__
from hearth.config import Settings
from hearth.db import open_database
from hearth.engine.manager import ModelManager
from hearth.safety import AuditLog, SafetyConfig, SafetyService
from hearth.server.anthropic.routes import router as anthropic_router
from hearth.server.auth import authenticate
from hearth.server.embedders import EmbedderPool
from hearth.server.errors import (
    anthropic_error,
    install_error_handlers,
    is_anthropic_path,
    openai_error,
)
from hearth.server.finetune_api import router as finetune_router
from hearth.server.hygiene import NetworkHygiene, allowed_hosts
from hearth.server.keys import KeyStore
from hearth.server.licenses_api import router as licenses_router
from hearth.server.metrics import Metrics
from hearth.server.ollama.create import router as create_router
from hearth.server.ollama.routes import router as ollama_router
from hearth.server.openai.routes import router as openai_router
from hearth.server.quotas import Quotas, limiter_for
from hearth.server.registry_api import install_registry_api
from hearth.server.rerank import router as rerank_router
from hearth.server.responses.routes import router as responses_router
from hearth.server.ui import install_dashboard
from hearth.server.usage import UsageLog
from hearth.store import Store

MAX_BODY_BYTES = 8 * 2**20


def create_app(settings: Settings, manager: ModelManager | None = None) -> FastAPI:
    """The app; it creates (and closes) its own ModelManager unless one is given."""
    safety = SafetyConfig.from_table(settings.safety, str(settings.home / "hearth.toml"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        owned = manager is None
        app.state.manager = manager or ModelManager(Store(settings), settings)
        app.state.embedders = EmbedderPool(app.state.manager)
        app.state.metrics = Metrics(app.state.manager)
        database = open_database(settings)
        app.state.database = database  # the dashboard reads usage rows from it
        app.state.keys = KeyStore(database)
        app.state.usage = UsageLog(database)
        app.state.quotas = Quotas(
            database,
            app.state.keys,
            app.state.usage,
            settings.hardware,
            limiter_for(settings, database),
        )
        app.state.safety = SafetyService(safety, AuditLog(database), app.state.manager)
        if owned:
            app.state.manager.start_reaper()
        try:
            yield
        finally:
            app.state.usage.close()  # every usage record reaches the database
            app.state.safety.audit.close()  # and every safety decision
            database.dispose()  # close pooled connections (PostgreSQL would keep them open)
            app.state.embedders.close()
            if owned:
                app.state.manager.close()

    app = FastAPI(
        title="Hearth",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(authenticate)],
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            message = f"request body over {MAX_BODY_BYTES} bytes"
            if is_anthropic_path(request.url.path):
                return anthropic_error(413, message)
            return openai_error(413, message, type_="invalid_request_error")
        return await call_next(request)

    @app.get("/health")
    async def health() -> Response:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        """Readiness: every loaded model's engine thread is alive."""
        manager: ModelManager = request.app.state.manager
        dead = manager.dead_engines()
        if dead:
            return JSONResponse({"status": "engine down", "models": dead}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        body = request.app.state.metrics.render()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.include_router(openai_router)
    app.include_router(responses_router)
    app.include_router(anthropic_router)
    app.include_router(rerank_router)
    app.include_router(ollama_router)
    install_registry_api(app)
    app.include_router(create_router)
    app.include_router(licenses_router)
    app.include_router(finetune_router)
    install_dashboard(app)  # /ui: pages, /ui/api, their security headers
    # Added last, so it runs first: an unknown Host is refused before anything else happens.
    app.add_middleware(NetworkHygiene, allowed=allowed_hosts(settings))
    return app
