"""Nothing secret reaches the logs: a `hearth serve` process at DEBUG level is sent API keys
(good and bad) and prompts over every API; its whole output holds none of them, nor the
completions it wrote. Hearth has no prompt-logging switch, so prompts are simply never logged."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from hearth.config import Settings
from hearth.db import open_database
from hearth.server.keys import KeyStore
from hearth.store import Store
from tests.cli.process import HEARTH, hearth_env
from tests.server.test_serve_process import free_port

NO_EOS = {"2": -100}
PROMPT = "PROMPT-zebra-quartz-7731"
BAD_KEY = "sk-hearth-not-a-real-key-5512"
OPTIONS = {"num_predict": 16}


def test_keys_prompts_and_completions_stay_out_of_the_logs(
    hearth_home: Path, tiny_chat_model: Path
) -> None:
    settings = Settings.from_env({"HEARTH_HOME": str(hearth_home)})
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    database = open_database(settings)
    key = KeyStore(database).create("app", models=None, expires=None, admin=True).secret
    database.dispose()
    port = free_port()
    env = {
        **hearth_env(hearth_home),
        "HEARTH_HOST": f"127.0.0.1:{port}",
        "HEARTH_LOG_LEVEL": "DEBUG",
        "HEARTH_CONTEXT": "512",
    }
    server = subprocess.Popen(
        [HEARTH, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base)
        completions = _talk(base, key)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, output
    assert "Hearth listening" in output  # the capture works
    assert completions  # and there was model output to look for
    for secret in (key, BAD_KEY, PROMPT, *completions):
        assert secret not in output


def _talk(base: str, key: str) -> list[str]:
    """Requests over each API with ``PROMPT``; the completions' text (long enough to be
    telling) for the caller to look for."""
    auth = {"authorization": f"Bearer {key}"}
    chat = {"model": "tiny-chat", "messages": [{"role": "user", "content": PROMPT}]}
    texts = []
    with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
        refused = client.post(
            "/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {BAD_KEY}"}
        )
        assert refused.status_code == 401
        answer = client.post(
            "/v1/completions",
            json={"model": "tiny-chat", "prompt": PROMPT, "max_tokens": 24, "logit_bias": NO_EOS},
        )
        texts.append(answer.json()["choices"][0]["text"])
        streamed = client.post(
            "/v1/chat/completions", json={**chat, "stream": True, "max_tokens": 8}
        )
        assert streamed.status_code == 200
        generated = client.post(
            "/api/generate",
            json={"model": "tiny-chat", "prompt": PROMPT, "stream": False, "options": OPTIONS},
        )
        texts.append(generated.json()["response"])
        client.post("/v1/messages", json={**chat, "max_tokens": 4}, headers={"x-api-key": key})
        missing = client.post("/v1/chat/completions", json={**chat, "model": PROMPT})
        assert missing.status_code == 404
    assert httpx.get(f"{base}/v1/models", headers={"x-api-key": BAD_KEY}).status_code == 401
    return [text.strip() for text in texts if len(text.strip()) >= 8]


def wait_healthy(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
