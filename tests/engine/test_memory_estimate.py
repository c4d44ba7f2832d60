"""The memory estimate against what llama.cpp reports allocating (its own log) and what the
process actually grows by. Each load runs in a child process so that llama.cpp's log goes to a
stderr we can read (the test process silences it once, for good) and RSS is measured cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hearth.engine.llm import EngineConfig
from hearth.engine.memory import MIB, MemoryEstimate, estimate_for_shape
from hearth.store.gguf_shape import read_gguf_shape

# Documented tolerances (hearth/engine/memory.py): the KV cache is exact; compute buffers are
# within 5% for Gemma, within 25% for the tiny model whose buffers are a few hundred KiB.
KV_TOLERANCE = 0.01
WEIGHTS_TOLERANCE = 0.05

CHILD = """
import json, sys
from pathlib import Path
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

path, context, max_seqs, batch, cache_seqs = sys.argv[1], *map(int, sys.argv[2:6])
before = rss()
config = EngineConfig(
    context=context, max_seqs=max_seqs, batch=batch, cache_seqs=cache_seqs, threads=2,
    llama_log=True,
)
with LLM(Path(path), config) as llm:
    llm.complete("Why is the sky blue? " * 2, SamplingParams(temperature=0, max_tokens=8)).text()
    print(json.dumps({"rss_growth": rss() - before}))
"""


@dataclass(frozen=True)
class Actual:
    weights: float  # MiB, model buffers (mapped + repacked)
    kv_cache: float
    compute: float  # compute + output buffers
    rss_growth: float


def _mib(pattern: str, log: str) -> float:
    return sum(float(size) for size in re.findall(pattern + r"\s*=\s*([\d.]+) MiB", log))


def load_and_measure(path: Path, config: EngineConfig) -> Actual:
    numbers = (config.context, config.max_seqs, config.batch, config.cache_seqs)
    args = [str(path), *map(str, numbers)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stderr
    return Actual(
        weights=_mib(r"model buffer size", log),
        kv_cache=_mib(r"llama_kv_cache:\s+\w+ KV buffer size", log),
        compute=_mib(r"compute buffer size", log) + _mib(r"output buffer size", log),
        rss_growth=json.loads(done.stdout)["rss_growth"] / MIB,
    )


def config_id(config: EngineConfig) -> str:
    return f"ctx{config.context}-seqs{config.max_seqs}+{config.cache_seqs}-batch{config.batch}"


def estimate(path: Path, config: EngineConfig) -> MemoryEstimate:
    return estimate_for_shape(read_gguf_shape(path), path.stat().st_size, config)


def check(estimated: MemoryEstimate, actual: Actual, compute_tolerance: float) -> None:
    assert estimated.kv_cache / MIB == pytest.approx(actual.kv_cache, rel=KV_TOLERANCE, abs=0.01)
    assert estimated.compute / MIB == pytest.approx(actual.compute, rel=compute_tolerance, abs=0.02)


@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(context=256, max_seqs=2, batch=64),
        EngineConfig(context=1024, max_seqs=4, batch=256, cache_seqs=2),
        EngineConfig(context=4096, max_seqs=16, batch=512, cache_seqs=4),  # 2048 per sequence
    ],
    ids=config_id,
)
def test_tiny_model_estimate_matches_llama_cpp(tiny_model: Path, config: EngineConfig) -> None:
    estimated = estimate(tiny_model, config)
    actual = load_and_measure(tiny_model, config)
    check(estimated, actual, compute_tolerance=0.25)
    assert estimated.weights / MIB == pytest.approx(actual.weights, rel=WEIGHTS_TOLERANCE)
    assert actual.rss_growth <= estimated.total / MIB


@pytest.mark.gemma
@pytest.mark.parametrize(
    "config",
    [
        EngineConfig(context=512, max_seqs=1, batch=64),  # sliding-window layers: window only
        EngineConfig(context=1024, max_seqs=4, batch=256, cache_seqs=4),  # full-size windows
    ],
    ids=config_id,
)
def test_gemma_estimate_matches_llama_cpp(gemma_model: Path, config: EngineConfig) -> None:
    estimated = estimate(gemma_model, config)
    actual = load_and_measure(gemma_model, config)
    check(estimated, actual, compute_tolerance=0.05)
    assert estimated.weights / MIB == pytest.approx(actual.weights, rel=WEIGHTS_TOLERANCE)
    # An upper bound on what the process really holds after a decode.
    assert actual.rss_growth <= estimated.total / MIB
