"""A real Hearth server (uvicorn on a loopback port) running in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from hearth.config import Settings
from hearth.engine.manager import ModelManager
from hearth.server.app import create_app


def server_settings(home: Path, **overrides: str) -> Settings:
    """Settings for a test server: a small context and few sequences keep it light."""
    env = {
        "HEARTH_HOME": str(home),
        "HEARTH_CONTEXT": "1024",
        "HEARTH_MAX_SEQS": "4",
        "HEARTH_CACHE_SEQS": "2",
        "HEARTH_THREADS": "2",
        **overrides,
    }
    return Settings.from_env(env)


@contextmanager
def live_server(settings: Settings, manager: ModelManager | None = None) -> Iterator[str]:
    """Yield the base URL of a server started for ``settings`` (around ``manager``, which the
    test may also hold, if given); stop it afterwards."""
    app = create_app(settings, manager)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
