"""The flow the privacy test records (run inside a loopback-only network namespace, under
strace): import a local GGUF, quantize it, `hearth serve`, chat over the API, `hearth run`
through the server and in-process, fetch the dashboard, stop the server with SIGTERM.

Usage: python offline_flow.py HOME MODEL_GGUF PROMPT RESULT_JSON. Writes RESULT_JSON with the
completions seen and the server's exit status; the server's output goes to HOME/../serve.log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HEARTH = str(Path(sys.executable).with_name("hearth"))
NO_EOS = {"2": -100}


def main(home: Path, model: Path, prompt: str, result: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_HOST": f"127.0.0.1:{port}"}
    hearth(env, "import", str(model), "--name", "tiny-chat")
    hearth(env, "quantize", "tiny-chat", "--to", "Q8_0", "--no-eval", "--name", "tiny-q8")
    completions = [hearth(env, "run", "tiny-chat", prompt, "--local")]  # no server yet
    log = (home.parent / "serve.log").open("w")
    server = subprocess.Popen([HEARTH, "serve"], env=env, stdout=log, stderr=log)
    try:
        wait_healthy(base)
        completions += chat(base, prompt)
        completions.append(hearth(env, "run", "tiny-chat", prompt))  # through the server
        for path in ("/ui", "/ui/static/app.js", "/ui/static/style.css"):
            assert httpx.get(base + path).status_code == 200, path
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    result.write_text(json.dumps({"completions": completions, "server_status": status}))


def hearth(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([HEARTH, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def chat(base: str, prompt: str) -> list[str]:
    body = {
        "model": "tiny-chat",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 24,
        "logit_bias": NO_EOS,
    }
    with httpx.Client(base_url=base, timeout=60) as client:
        answer = client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200, answer.text
        quantized = client.post("/v1/chat/completions", json={**body, "model": "tiny-q8"})
        assert quantized.status_code == 200, quantized.text
        return [r.json()["choices"][0]["message"]["content"] for r in (answer, quantized)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
