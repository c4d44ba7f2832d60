"""Open-loop load on `hearth serve` over loopback: a ramp up to overload, then a soak.

    .venv/bin/python bench/load.py [--rates 0.25,0.5,1,1.5,2,3] [--step-seconds 45]
                                   [--soak-minutes 20] [--tokens 64]

Requests arrive as a Poisson process at each offered rate (open loop: arrivals never wait for
answers, as real clients do not), each a streamed /v1/completions of exactly --tokens tokens
(end of generation masked) on the real Gemma 3 270M. For every rate it prints the requests and
tokens served per second, time to first token (p50/p95/p99), inter-token latency (p50/p95/p99)
and the error mix; past saturation only 429 and 503 are acceptable answers ("unexpected" counts
anything else, including transport errors). Saturation is the highest rate served with under 1%
errors. The soak then offers 80% of that rate for --soak-minutes and samples the server's
resident memory: after a warm-up tenth, RSS must stay flat within 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from hearth.devtools.local_server import free_port, start_hearth, wait_ready

MODEL = "gemma3:270m"
ACCEPTED_OVERLOAD = {429, 503}


@dataclass
class Sample:
    """One request's outcome: HTTP status (0: transport error), token times."""

    status: int
    started: float
    token_times: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 200

    def ttft(self) -> float | None:
        return self.token_times[0] - self.started if self.token_times else None

    def gaps(self) -> list[float]:
        return [later - earlier for earlier, later in itertools.pairwise(self.token_times)]


@dataclass
class Step:
    rate: float
    seconds: float
    samples: list[Sample]

    def served(self) -> list[Sample]:
        return [s for s in self.samples if s.ok]

    def error_mix(self) -> Counter[str]:
        mix: Counter[str] = Counter()
        for sample in self.samples:
            if sample.ok:
                continue
            mix[str(sample.status) if sample.status in ACCEPTED_OVERLOAD else "unexpected"] += 1
        return mix

    def error_share(self) -> float:
        return sum(self.error_mix().values()) / max(1, len(self.samples))


async def one_request(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> Sample:
    sample = Sample(status=0, started=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body, timeout=300) as response:
            sample.status = response.status_code
            async for line in response.aiter_lines():
                if line.startswith("data: {") and _has_text(line[6:]):
                    sample.token_times.append(time.perf_counter())
    except httpx.HTTPError:
        sample.status = 0
    return sample


def _has_text(payload: str) -> bool:
    return any(choice.get("text") for choice in json.loads(payload).get("choices", []))


async def open_loop(
    url: str, rate: float, seconds: float, body_for: Callable[[int], dict[str, object]], seed: int
) -> Step:
    """Poisson arrivals at ``rate`` per second for ``seconds``; waits for every answer."""
    arrivals = random.Random(seed)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:
        tasks: list[asyncio.Task[Sample]] = []
        started = time.perf_counter()
        next_at = arrivals.expovariate(rate)
        while next_at < seconds:
            await asyncio.sleep(max(0.0, started + next_at - time.perf_counter()))
            tasks.append(asyncio.create_task(one_request(client, url, body_for(len(tasks)))))
            next_at += arrivals.expovariate(rate)
        samples = list(await asyncio.gather(*tasks))
    return Step(rate=rate, seconds=time.perf_counter() - started, samples=samples)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def step_table(steps: list[Step], tokens: int) -> Table:
    table = Table(title=f"Open-loop ramp, {MODEL}, {tokens} tokens a request")
    for column in ("offered req/s", "served req/s", "tokens/s", "TTFT p50/p95/p99 ms"):
        table.add_column(column, justify="right")
    table.add_column("ITL p50/p95/p99 ms", justify="right")
    table.add_column("errors", justify="left")
    for step in steps:
        served = step.served()
        ttfts = [t for s in served if (t := s.ttft()) is not None]
        gaps = [gap for s in served for gap in s.gaps()]
        table.add_row(
            f"{step.rate:.2f}",
            f"{len(served) / step.seconds:.2f}",
            f"{sum(len(s.token_times) for s in served) / step.seconds:.1f}",
            _triple(ttfts),
            _triple(gaps),
            ", ".join(f"{k}: {v}" for k, v in sorted(step.error_mix().items())) or "none",
        )
    return table


def _triple(values: list[float]) -> str:
    return "/".join(f"{percentile(values, q) * 1000:.0f}" for q in (0.5, 0.95, 0.99))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def soak(
    url: str, rate: float, seconds: float, body_for: Callable[[int], dict[str, object]], pid: int
) -> tuple[Step, list[int]]:
    """The soak's step and the server's RSS sampled every 5 seconds while it runs."""
    rss: list[int] = []

    async def sample_memory() -> None:
        while True:
            rss.append(rss_bytes(pid))
            await asyncio.sleep(5)

    sampler = asyncio.create_task(sample_memory())
    try:
        step = await open_loop(url, rate, seconds, body_for, seed=99)
    finally:
        sampler.cancel()
    rss.append(rss_bytes(pid))
    return step, rss


def rss_drift(rss: list[int]) -> float:
    """Last tenth's mean RSS over the mean after warm-up (the first tenth), minus one."""
    tenth = max(1, len(rss) // 10)
    settled = statistics.mean(rss[tenth : 2 * tenth])
    return statistics.mean(rss[-tenth:]) / settled - 1


def saturation(steps: list[Step]) -> Step:
    healthy = [s for s in steps if s.error_share() < 0.01]
    if not healthy:
        raise SystemExit("error: even the lowest rate failed over 1% of its requests")
    return max(healthy, key=lambda s: len(s.served()) / s.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rates", default="0.25,0.5,1,1.5,2,3")
    parser.add_argument("--step-seconds", type=float, default=45)
    parser.add_argument("--soak-minutes", type=float, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=16)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    console = Console(width=120)

    from hearth.config import Settings
    from hearth.engine.llm import LLM, EngineConfig
    from hearth.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        local = Store(Settings.from_env({"HEARTH_HOME": str(home)})).pull(MODEL)
        with LLM(local.model_path, EngineConfig(context=64, max_seqs=1)) as probe:
            eos = probe.tokenizer.eos

        def body_for(i: int) -> dict[str, object]:
            return {
                "model": MODEL,
                "prompt": f"Note {i}: the weekly report for the warehouse team says that",
                "max_tokens": args.tokens,
                "temperature": 0.7,
                "seed": i,
                "stream": True,
                "logit_bias": {str(eos): -100},
            }

        port = free_port()
        settings = {"HEARTH_MAX_QUEUE": str(args.max_queue), "HEARTH_CONTEXT": "512"}
        server = start_hearth(home, port, settings)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server)
            endpoint = url + "/v1/completions"
            asyncio.run(open_loop(endpoint, 1.0, 3, body_for, seed=0))  # load the model
            steps = []
            for index, rate in enumerate(rates):
                steps.append(
                    asyncio.run(open_loop(endpoint, rate, args.step_seconds, body_for, index + 1))
                )
                console.print(f"rate {rate:g}/s done: {len(steps[-1].samples)} requests")
            console.print(step_table(steps, args.tokens))
            best = saturation(steps)
            served_rate = len(best.served()) / best.seconds
            console.print(
                f"saturation: {served_rate:.2f} requests/s served at offered {best.rate:g}/s; "
                f"unexpected errors over the whole ramp: "
                f"{sum(s.error_mix()['unexpected'] for s in steps)}"
            )
            if args.soak_minutes > 0:
                soak_rate = 0.8 * served_rate
                soak_step, rss = asyncio.run(
                    soak(endpoint, soak_rate, args.soak_minutes * 60, body_for, server.pid)
                )
                console.print(step_table([soak_step], args.tokens))
                console.print(
                    f"soak: {args.soak_minutes:g} min at {soak_rate:.2f} requests/s, "
                    f"{len(soak_step.served())}/{len(soak_step.samples)} served; RSS "
                    f"{min(rss) / 2**20:.0f}-{max(rss) / 2**20:.0f} MiB over {len(rss)} samples, "
                    f"drift after warm-up {rss_drift(rss) * 100:+.1f}% (target within ±5%)"
                )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
