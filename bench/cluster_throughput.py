"""Hearth on Ray Serve: aggregate throughput with 2 replicas vs 1, one CPU each, one run.

    .venv/bin/python bench/cluster_throughput.py [--tiny] [--streams 16] [--tokens 64]

Starts a one-node Ray cluster (`ray start --head --num-cpus 2`, loopback, a temp dir), deploys
Hearth with ``[cluster.models."<model>"] replicas = 1, num_cpus = 1`` (so one llama.cpp thread),
runs N concurrent streaming /v1/completions clients through the ingress (end of generation
masked, so every stream makes all its tokens), then redeploys with ``replicas = 2`` and runs
the same clients. Prints tokens/s for each and the ratio (the target is 1.7x or more: two
processes, each decoding on its own core). Gemma 3 270M (``gemma3:270m`` from its PyPI package)
by default; ``--tiny`` uses the tiny test model (seconds, but mostly measures overhead).
Needs an otherwise idle machine: other work on the cores shows up directly in the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hearth.config import Settings
from hearth.devtools.tiny_gguf import write_tiny_gguf
from hearth.store import Store

READY_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_ray(root: Path, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={address.rsplit(':', 1)[1]}",
        "--num-cpus=2",
        f"--temp-dir={root}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    env = {**os.environ, "HEARTH_HOME": str(home)}
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", int(address.rsplit(":", 1)[1]))) == 0:
                return process, address
        time.sleep(0.2)
    raise RuntimeError("Ray did not start")


def stop_ray(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def prepare_model(home: Path, tiny: bool) -> tuple[str, list[int]]:
    """The model's name in ``home``'s store and its end-of-generation tokens."""
    store = Store(Settings.from_env({"HEARTH_HOME": str(home)}))
    if tiny:
        store.import_gguf(write_tiny_gguf(home.parent / "tiny.gguf"), "tiny")
        return "tiny", [2]  # </s>
    store.ensure("gemma3:270m")
    return "gemma3:270m", [1, 106]  # <eos>, <end_of_turn>


def write_config(home: Path, model: str, replicas: int, port: int) -> None:
    (home / "hearth.toml").write_text(
        f'[cluster]\nhttp = "127.0.0.1:{port}"\n\n'
        f'[cluster.models."{model}"]\nreplicas = {replicas}\nnum_cpus = 1\n'
    )


def deploy(address: str, home: Path) -> None:
    from hearth.cluster.serve import cluster_config
    from hearth.cluster.serve import deploy as deploy_cluster

    os.environ["HEARTH_HOME"] = str(home)
    settings = Settings.from_env()
    deploy_cluster(address, settings, cluster_config(settings))


def wait_ready(url: str, replicas: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/api/cluster/status", timeout=10).json()
            if len([r for r in status["replicas"] if r["ready"]]) >= replicas:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise RuntimeError(f"{replicas} replicas did not become ready")


async def one_stream(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> int:
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                tokens += len(json.loads(line[6:]).get("choices", []))
    return tokens


async def throughput(url: str, model: str, streams: int, tokens: int, eos: list[int]) -> float:
    def body(i: int) -> dict[str, object]:
        return {
            "model": model,
            "prompt": f"Story {i}: once upon a time, in a town by the sea,",
            "max_tokens": tokens,
            "temperature": 0,
            "stream": True,
            "logit_bias": {str(token): -100 for token in eos},
        }

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(one_stream(client, url, body(i)) for i in range(4)))  # warm
        started = time.perf_counter()
        produced = await asyncio.gather(*(one_stream(client, url, body(i)) for i in range(streams)))
        seconds = time.perf_counter() - started
    if sum(produced) != streams * tokens:
        print(f"warning: {sum(produced)} tokens produced, {streams * tokens} expected")
    return sum(produced) / seconds


def measure(
    address: str, home: Path, model: str, eos: list[int], replicas: int, args: Any
) -> float:
    from hearth.cluster.serve import undeploy

    port = args.port  # one port: Serve keeps its first HTTP options for the cluster's life
    write_config(home, model, replicas, port)
    deploy(address, home)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, replicas)
        return asyncio.run(throughput(url, model, args.streams, args.tokens, eos))
    finally:
        undeploy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny test model, not Gemma")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    args.port = free_port()
    root = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))
    home = root / "home"
    model, eos = prepare_model(home, args.tiny)
    ray_process, address = start_ray(root / "ray", home)
    try:
        one = measure(address, home, model, eos, 1, args)
        two = measure(address, home, model, eos, 2, args)
    finally:
        import ray

        ray.shutdown()
        stop_ray(ray_process)
        shutil.rmtree(root, ignore_errors=True)
    print(f"model {model}, {args.streams} streams x {args.tokens} tokens, 1 CPU per replica")
    print(f"1 replica : {one:8.1f} tokens/s")
    print(f"2 replicas: {two:8.1f} tokens/s")
    print(f"ratio     : {two / one:8.2f}x (target >= 1.7x)")


if __name__ == "__main__":
    main()
