"""The model manager's pure parts: which idle models to unload, and the memory estimate."""

from __future__ import annotations

import pytest

from hearth.engine.llm import EngineConfig
from hearth.engine.manager import Resident, choose_evictions
from hearth.engine.memory import MIB, estimate_for_shape, kv_cache_bytes, kv_cells
from hearth.errors import InvalidModelFileError
from hearth.store.gguf_shape import ModelShape, shape_from_metadata


def idle(name: str, memory: int, last_used: float) -> Resident:
    return Resident(name, memory, last_used, busy=False)


def busy(name: str, memory: int, last_used: float) -> Resident:
    return Resident(name, memory, last_used, busy=True)


def test_nothing_to_unload_when_it_fits() -> None:
    assert choose_evictions([idle("a", 30, 1.0)], need=70, budget=100) == []
    assert choose_evictions([], need=100, budget=100) == []


def test_least_recently_used_goes_first_and_only_as_many_as_needed() -> None:
    residents = [idle("new", 30, 3.0), idle("old", 30, 1.0), idle("mid", 30, 2.0)]
    assert choose_evictions(residents, need=40, budget=100) == ["old"]
    assert choose_evictions(residents, need=60, budget=100) == ["old", "mid"]
    assert choose_evictions(residents, need=100, budget=100) == ["old", "mid", "new"]


def test_busy_models_are_never_chosen() -> None:
    residents = [busy("oldest", 50, 0.0), idle("a", 20, 1.0), idle("b", 20, 2.0)]
    assert choose_evictions(residents, need=30, budget=100) == ["a"]
    assert choose_evictions(residents, need=50, budget=100) == ["a", "b"]


def test_none_when_unloading_every_idle_model_is_not_enough() -> None:
    residents = [busy("held", 60, 0.0), idle("a", 20, 1.0)]
    assert choose_evictions(residents, need=50, budget=100) is None
    assert choose_evictions([], need=101, budget=100) is None


def shape(**changes: object) -> ModelShape:
    base: dict[str, object] = {
        "architecture": "llama",
        "n_layers": 4,
        "n_embd": 256,
        "n_ff": 512,
        "n_vocab": 1000,
        "context_length": 2048,
        "n_head_kv": (2, 2, 2, 2),
        "key_length": 64,
        "value_length": 64,
        "sliding_window": None,
        "swa_layers": (False,) * 4,
    }
    return ModelShape(**(base | changes))  # type: ignore[arg-type]


def test_kv_cache_is_layers_times_cells_times_kv_width_in_f16() -> None:
    config = EngineConfig(context=1024, max_seqs=2, batch=128)
    assert kv_cells(shape(), config) == 2048
    # 4 layers × 2048 cells × (2 heads × (64 + 64)) × 2 bytes
    assert kv_cache_bytes(shape(), config) == 4 * 2048 * 256 * 2


def test_cells_are_capped_by_the_training_context_and_rounded_up_to_256() -> None:
    assert kv_cells(shape(), EngineConfig(context=8192, max_seqs=3)) == 2048 * 3
    assert kv_cells(shape(), EngineConfig(context=100, max_seqs=3)) == 512
    assert kv_cells(shape(context_length=None), EngineConfig(context=300, max_seqs=1)) == 512


def test_prefix_cache_sequences_and_explicit_cells_count() -> None:
    assert kv_cells(shape(), EngineConfig(context=512, max_seqs=2, cache_seqs=2)) == 2048
    assert kv_cells(shape(), EngineConfig(context=512, max_seqs=2, kv_cells=1000)) == 1024


def test_per_layer_kv_heads() -> None:
    config = EngineConfig(context=256, max_seqs=1)
    uneven = shape(n_head_kv=(1, 2, 4, 0))
    assert kv_cache_bytes(uneven, config) == 256 * (1 + 2 + 4 + 0) * 128 * 2


def test_sliding_window_layers_hold_the_window_unless_the_prefix_cache_is_on() -> None:
    swa = shape(sliding_window=512, swa_layers=(True, True, True, False))
    config = EngineConfig(context=2048, max_seqs=2, batch=256)
    window_cells = 512 * 2 + 256  # window × sequences + micro-batch, already a multiple of 256
    assert kv_cache_bytes(swa, config) == (3 * window_cells + 4096) * 256 * 2
    # With a prefix cache, LLM asks llama.cpp for full-size sliding-window caches.
    cached = EngineConfig(context=2048, max_seqs=2, batch=256, cache_seqs=1)
    assert kv_cache_bytes(swa, cached) == 4 * 6144 * 256 * 2
    # A window larger than the context is capped at the full cache.
    wide = shape(sliding_window=100_000, swa_layers=(True,) * 4)
    assert kv_cache_bytes(wide, config) == 4 * 4096 * 256 * 2


def test_compute_is_the_larger_of_logits_and_masks_plus_activations_and_output() -> None:
    config = EngineConfig(context=1024, max_seqs=2, batch=128, cache_seqs=1)
    estimate = estimate_for_shape(shape(), weights=10 * MIB, config=config)
    logits = 1000 * 128 * 4
    masks = 3072 * 128 * 2
    activations = 128 * (256 + 512) * 8
    output = 1000 * 3 * 4
    assert estimate.compute == max(logits, masks) + activations + output
    assert estimate.weights == 10 * MIB
    assert estimate.overhead == 8 * MIB + 1000 * 128
    assert estimate.total == sum(
        (estimate.weights, estimate.kv_cache, estimate.compute, estimate.overhead)
    )


def test_more_context_or_sequences_cost_more() -> None:
    small = estimate_for_shape(shape(), 0, EngineConfig(context=512, max_seqs=1))
    longer = estimate_for_shape(shape(), 0, EngineConfig(context=2048, max_seqs=1))
    wider = estimate_for_shape(shape(), 0, EngineConfig(context=512, max_seqs=4))
    assert small.total < longer.total
    assert small.total < wider.total


def test_shape_from_metadata_defaults_like_llama_cpp() -> None:
    parsed = shape_from_metadata(
        {
            "general.architecture": "gemma3",
            "gemma3.block_count": 12,
            "gemma3.embedding_length": 512,
            "gemma3.attention.head_count": 8,
            "gemma3.attention.sliding_window": 512,
        },
        n_vocab=300,
    )
    assert parsed.n_head_kv == (8,) * 12  # no head_count_kv: as many KV heads as heads
    assert parsed.key_length == parsed.value_length == 64  # n_embd / n_head
    assert parsed.n_vocab == 300
    assert parsed.n_ff == 0
    # Gemma 3 without a pattern key: llama.cpp's built-in 5 sliding : 1 global layout.
    assert parsed.swa_layers == (True,) * 5 + (False,) + (True,) * 5 + (False,)


def test_shape_from_metadata_reads_per_layer_arrays_and_patterns() -> None:
    parsed = shape_from_metadata(
        {
            "general.architecture": "mystery",
            "mystery.block_count": 3,
            "mystery.embedding_length": 64,
            "mystery.attention.head_count": [4, 4, 4],
            "mystery.attention.head_count_kv": [1, 2],
            "mystery.attention.key_length": 32,
            "mystery.attention.value_length": 16,
            "mystery.feed_forward_length": [100, 300, 200],
            "mystery.vocab_size": 77,
            "mystery.attention.sliding_window": 128,
            "mystery.attention.sliding_window_pattern": [True, False, True],
        },
        n_vocab=5,
    )
    assert parsed.n_head_kv == (1, 2, 2)  # a short array repeats its last value
    assert parsed.kv_width(0) == 48
    assert parsed.n_ff == 300
    assert parsed.n_vocab == 77  # vocab_size wins over the token list's length
    assert parsed.swa_layers == (True, False, True)


def test_unknown_sliding_window_layout_counts_every_layer_as_global() -> None:
    parsed = shape_from_metadata(
        {
            "general.architecture": "mystery",
            "mystery.block_count": 2,
            "mystery.attention.sliding_window": 128,
        }
    )
    assert parsed.swa_layers == (False, False)
    assert parsed.sliding_window == 128


def test_shape_needs_an_architecture_and_numbers() -> None:
    with pytest.raises(InvalidModelFileError, match=r"general\.architecture"):
        shape_from_metadata({})
    with pytest.raises(InvalidModelFileError, match="number"):
        shape_from_metadata({"general.architecture": "llama", "llama.block_count": "two"})
