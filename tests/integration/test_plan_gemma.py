"""The planner against what llama.cpp allocates for Gemma 3 270M (its own log, read in a child
process) and against the sizes of Gemma quantized by llama.cpp's quantizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.engine.llm import EngineConfig
from hearth.plan import PlanRequest, estimate, read_local_header, weights_bytes
from hearth.store.quantize import QuantizeOptions, parse_quant_type, quantize_gguf
from tests.engine.test_memory_estimate import load_and_measure

pytestmark = pytest.mark.gemma
MIB = 2**20
TOLERANCE = 0.10


@pytest.mark.parametrize(("context", "parallel"), [(512, 1), (4096, 4), (8192, 8)])
def test_plan_matches_llama_cpp_buffers(gemma_model: Path, context: int, parallel: int) -> None:
    header = read_local_header(gemma_model)
    request = PlanRequest(context=context, parallel=parallel, memory=1 << 40)
    planned = estimate(header, gemma_model.stat().st_size, request)
    actual = load_and_measure(gemma_model, EngineConfig(context=context, max_seqs=parallel))
    assert planned.kv_cache / MIB == pytest.approx(actual.kv_cache, rel=TOLERANCE)
    assert planned.compute / MIB == pytest.approx(actual.compute, rel=TOLERANCE)
    assert planned.weights / MIB == pytest.approx(actual.weights, rel=TOLERANCE)
    buffers = actual.weights + actual.kv_cache + actual.compute
    assert (planned.total - planned.overhead) / MIB == pytest.approx(buffers, rel=TOLERANCE)


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
def test_weight_estimates_match_quantized_gemma(
    gemma_model: Path, tmp_path: Path, quant: str
) -> None:
    _, ftype = parse_quant_type(quant)
    target = tmp_path / f"gemma-{quant}.gguf"
    quantize_gguf(gemma_model, target, QuantizeOptions(ftype, 2, allow_requantize=True))
    estimated = weights_bytes(read_local_header(gemma_model).header, quant)
    assert estimated == pytest.approx(target.stat().st_size, rel=0.01)
