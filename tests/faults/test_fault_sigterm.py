"""SIGTERM while `hearth serve` streams to several clients: it stops accepting, lets every
stream run to its end, flushes their usage rows, and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import httpx

from hearth.config import Settings
from hearth.db import open_database
from hearth.server.usage import UsageLog
from hearth.store import Store
from tests.cli.process import HEARTH, hearth_env
from tests.server.test_hygiene_logs import wait_healthy
from tests.server.test_serve_process import free_port

STREAMS = 6
MAX_TOKENS = 60
NO_EOS = {"2": -100}


def stream_to_the_end(base: str, started: threading.Barrier, reasons: list[str]) -> None:
    try:
        read_stream(base, started, reasons)
    except Exception as error:  # the test asserts on `reasons`; keep the cause in view
        reasons.append(repr(error))


def read_stream(base: str, started: threading.Barrier, reasons: list[str]) -> None:
    body = {
        "model": "tiny",
        "prompt": "go",
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "logit_bias": NO_EOS,
    }
    with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=120) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        started.wait()  # every stream is under way before the signal
        for line in (first, *lines):
            if line.startswith("data: {"):
                reason = json.loads(line[6:])["choices"][0]["finish_reason"]
                if reason is not None:
                    reasons.append(reason)


def test_sigterm_under_load_drains_every_stream_and_exits_0(
    hearth_home: Path, tiny_model: Path
) -> None:
    settings = Settings.from_env({"HEARTH_HOME": str(hearth_home)})
    Store(settings).import_gguf(tiny_model, "tiny")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **hearth_env(hearth_home),
        "HEARTH_HOST": f"127.0.0.1:{port}",
        "HEARTH_MAX_SEQS": "8",
        "HEARTH_THREADS": "1",
        # Draining is what is tested, not the deadline that cuts streams off after it.
        "HEARTH_SHUTDOWN_TIMEOUT": "300",
    }
    server = subprocess.Popen([HEARTH, "serve"], env=env, stderr=subprocess.DEVNULL)
    reasons: list[str] = []
    try:
        wait_healthy(base)
        started = threading.Barrier(STREAMS + 1)
        clients = [
            threading.Thread(target=stream_to_the_end, args=(base, started, reasons))
            for _ in range(STREAMS)
        ]
        for client in clients:
            client.start()
        started.wait(timeout=60)
        server.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(timeout=120)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert reasons == ["length"] * STREAMS
    database = open_database(settings)
    try:
        with UsageLog(database) as log:
            [row] = log.summary(group_by="model")
    finally:
        database.dispose()
    assert (row.requests, row.completion_tokens, row.aborted) == (STREAMS, STREAMS * MAX_TOKENS, 0)
