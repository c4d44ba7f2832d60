"""Overhead of the governance path on streamed requests: the same server with it on and off.

    .venv/bin/python bench/governance.py [--streams 16] [--tokens 128] [--rounds 2]

Safety part (this file's :func:`safety_overhead`): two `hearth serve` processes on the same
Gemma 3 270M, one whose hearth.toml turns every safety rule on (all PII kinds redacted, a
blocklist, two patterns; input and output, streams checked as they are written) and one
without; they run one at a time, alternating off/on ``rounds`` times, each with N concurrent
streaming clients (/v1/completions, end-of-generation masked so each stream makes all its
tokens). Prints tokens/s in total for each and the ratio (target: under 5% slower at 16), the
median time to the first text (TTFT) and to the first visible word (the first text that is
not only spaces: the safety filter sends a leading space at once but a word once it ends).
Other governance parts (quotas) can add their own function beside it and print from main().
Run it on an otherwise idle machine: llama.cpp's threads and the server's share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

THREADS = 2
MODEL = "gemma3:270m"
SAFETY_ON = """
[safety.default]
pii = "redact"
blocklist = ["forbidden phrase", "another banned word", "secret project"]
patterns = { codename = 'PROJECT-[A-Z]{4}', ticket = 'TICKET-\\d{6}' }
"""


@dataclass(frozen=True)
class Run:
    tokens_per_s: float
    completed: int
    median_ttft_s: float
    median_first_word_s: float


@dataclass(frozen=True)
class Overhead:
    off: list[Run]
    on: list[Run]

    @property
    def ratio(self) -> float:
        """Safety-on throughput over safety-off throughput (medians of the rounds)."""
        on = statistics.median(r.tokens_per_s for r in self.on)
        off = statistics.median(r.tokens_per_s for r in self.off)
        return on / off


def safety_overhead(streams: int = 16, tokens: int = 128, rounds: int = 2) -> Overhead:
    """Throughput of ``streams`` concurrent streams with the safety pipeline off and on."""
    from hearth.config import Settings
    from hearth.engine.llm import LLM, EngineConfig
    from hearth.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        homes = {"off": Path(tmp) / "off", "on": Path(tmp) / "on"}
        for name, home in homes.items():
            local = Store(Settings.from_env({"HEARTH_HOME": str(home)})).pull(MODEL)
            if name == "on":
                (home / "hearth.toml").write_text(SAFETY_ON)
        with LLM(local.model_path, EngineConfig(context=64, max_seqs=1)) as probe:
            eos = probe.tokenizer.eos
        results: dict[str, list[Run]] = {"off": [], "on": []}
        for _ in range(rounds):
            for name in ("off", "on"):
                results[name].append(_serve_and_measure(homes[name], streams, tokens, eos))
        return Overhead(results["off"], results["on"])


def _serve_and_measure(home: Path, streams: int, tokens: int, eos: int) -> Run:
    port = _free_port()
    env = {
        **os.environ,
        "HEARTH_HOME": str(home),
        "HEARTH_HOST": f"127.0.0.1:{port}",
        "HEARTH_THREADS": str(THREADS),
        "HEARTH_CONTEXT": "1024",
        "HEARTH_MAX_SEQS": str(streams),
        "HEARTH_CACHE_SEQS": "0",
    }
    hearth = Path(sys.executable).with_name("hearth")
    server = subprocess.Popen([str(hearth), "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, server)
        asyncio.run(_concurrent(url, 1, 4, eos))  # load the model before timing
        return asyncio.run(_concurrent(url, streams, tokens, eos))
    finally:
        server.terminate()
        server.wait()


async def _concurrent(url: str, streams: int, tokens: int, eos: int) -> Run:
    def body(i: int) -> dict[str, object]:
        return {
            "model": MODEL,
            "prompt": f"Story {i}: once upon a time, in a town by the sea,",
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "logit_bias": {str(eos): -100},
        }

    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(_one_stream(client, url, body(i)) for i in range(streams)))
        seconds = time.perf_counter() - started
    produced = sum(r[0] for r in results)
    completed = sum(1 for r in results if r[3])
    return Run(
        produced / seconds,
        completed,
        statistics.median(r[1] for r in results),
        statistics.median(r[2] for r in results),
    )


async def _one_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, object]
) -> tuple[int, float, float, bool]:
    """(completion tokens, seconds to first text, seconds to first visible word, finished)
    for one streamed request."""
    started = time.perf_counter()
    first: float | None = None
    word: float | None = None
    produced = 0
    finished = False
    body = {**body, "stream_options": {"include_usage": True}}
    async with client.stream("POST", url + "/v1/completions", json=body, timeout=600) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                produced = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if choice.get("text"):
                    first = first or time.perf_counter()
                if choice.get("text", "").strip():
                    word = word or time.perf_counter()
                finished = finished or choice.get("finish_reason") is not None
    end = time.perf_counter()
    return produced, (first or end) - started, (word or end) - started, finished


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    overhead = safety_overhead(args.streams, args.tokens, args.rounds)
    for name, runs in (("off", overhead.off), ("on", overhead.on)):
        rates = ", ".join(f"{r.tokens_per_s:.1f}" for r in runs)
        ttft = statistics.median(r.median_ttft_s for r in runs) * 1000
        word = statistics.median(r.median_first_word_s for r in runs) * 1000
        done = min(r.completed for r in runs)
        print(
            f"safety {name:>3}: {rates} tokens/s in total ({args.streams} streams, "
            f"{args.tokens} tokens each; >= {done} complete per round), median TTFT {ttft:.0f} ms, "
            f"first word {word:.0f} ms"
        )
    change = (overhead.ratio - 1) * 100
    print(
        f"safety on / off: {overhead.ratio:.3f} ({change:+.1f}% tokens/s with safety on; "
        "target: no worse than -5%)"
    )


if __name__ == "__main__":
    main()
