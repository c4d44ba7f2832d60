"""`hearth serve` as a process: aliases from hearth.toml, and a graceful SIGTERM (usage flushed
to SQLite and to PostgreSQL)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import openai

from hearth.config import Settings
from hearth.db import open_database
from hearth.server.usage import UsageLog
from hearth.store import Store
from tests.cli.process import HEARTH, hearth_env

NO_EOS = {"2": -100}  # the tiny model's end-of-sequence token: every answer runs to max_tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_alias_then_sigterm_finishes_the_stream_and_flushes_usage(
    hearth_home: Path, tiny_chat_model: Path, server_database_url: str
) -> None:
    Store(Settings.from_env({"HEARTH_HOME": str(hearth_home)})).import_gguf(
        tiny_chat_model, "tiny-chat"
    )
    (hearth_home / "hearth.toml").write_text('[aliases]\n"gpt-4o-mini" = "tiny-chat"\n')
    port = free_port()
    env = {
        **hearth_env(hearth_home),
        "HEARTH_HOST": f"127.0.0.1:{port}",
        "HEARTH_CONTEXT": "1024",
        "HEARTH_MAX_SEQS": "2",
        "HEARTH_DATABASE_URL": server_database_url,
    }
    server = subprocess.Popen([HEARTH, "serve"], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        with openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0) as client:
            answer = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=3,
                logit_bias=NO_EOS,
            )
            assert answer.model == "gpt-4o-mini"  # the application sees the name it asked for
            stream = client.completions.create(
                model="gpt-4o-mini", prompt="go", max_tokens=200, stream=True, logit_bias=NO_EOS
            )
            first = next(iter(stream))
            assert first.choices[0].text is not None
            server.send_signal(signal.SIGTERM)
            rest = list(stream)  # in-flight streams are allowed to finish
            assert rest[-1].choices[0].finish_reason == "length"
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    database = open_database(
        Settings.from_env(
            {"HEARTH_HOME": str(hearth_home), "HEARTH_DATABASE_URL": server_database_url}
        )
    )
    log = UsageLog(database)
    try:
        rows = log.summary(group_by="model")
        assert [(r.group, r.requests) for r in rows] == [("tiny-chat", 2)]
        assert rows[0].completion_tokens == 3 + 200
    finally:
        log.close()
        database.dispose()
