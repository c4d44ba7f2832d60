"""Quantizing through the store with llama.cpp's real quantizer, on tiny F32 models whose
dimensions K-quants accept (multiples of 256), and once on Gemma (requantize Q4_K_M → Q8_0)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.errors import QuantizationError, ValidationError
from hearth.store import MediaType, Store
from hearth.store.names import parse_name
from hearth.store.perplexity import perplexity
from hearth.store.quantize import (
    QuantizeOptions,
    default_target_name,
    parse_quant_type,
    quant_types,
    quantize_gguf,
)

QUANTIZABLE = TinyModelSpec(n_embd=256, n_ff=512, n_heads=4, n_kv_heads=2)
TENSORS = 3 + 9 * QUANTIZABLE.n_layers


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("q") / "tiny-f32.gguf", QUANTIZABLE)


@pytest.fixture
def stored(store: Store, f32_model: Path) -> Store:
    store.import_gguf(f32_model, "tiny:f32")
    return store


def temp_files(store: Store) -> list[Path]:
    return [p for p in store.blobs.root.iterdir() if p.name.startswith(".tmp-")]


def test_quant_names_cover_the_usual_ones() -> None:
    assert {"Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "Q5_0", "F16", "F32"} <= set(quant_types())
    assert parse_quant_type("q4_k_m") == ("Q4_K_M", 15)


def test_unknown_quant_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError, match="Q4_K_M") as caught:
        parse_quant_type("Q9_Z")
    assert caught.value.param == "to"


def test_default_target_name_adds_the_quant_to_the_tag() -> None:
    assert default_target_name(parse_name("gemma3:270m"), "Q8_0") == "gemma3:270m-q8_0"
    assert default_target_name(parse_name("acme/bot"), "Q4_K_M") == "acme/bot:q4_k_m"


def test_quantize_stores_a_new_model_keeping_layers(stored: Store) -> None:
    source = stored.resolve("tiny:f32")
    calls: list[tuple[int, int | None]] = []
    model = stored.quantize("tiny:f32", "Q8_0", progress=lambda d, t: calls.append((d, t)))
    assert str(model.name) == "tiny:f32-q8_0"
    assert model.info.quantization == "Q8_0"
    assert model.info.source == f"quantized:{source.manifest.layer(MediaType.MODEL).digest}"  # type: ignore[union-attr]
    assert model.info.license_id == source.info.license_id == "apache-2.0"
    assert model.model_path.stat().st_size < source.model_path.stat().st_size / 3
    assert calls[-1] == (TENSORS, TENSORS) and len(calls) == TENSORS
    assert gguf.GGUFReader(model.model_path).get_field("general.file_type").contents() == 7
    assert math.isfinite(perplexity(model.model_path).perplexity)
    assert stored.resolve("tiny:f32").manifest == source.manifest  # the source is untouched
    assert temp_files(stored) == []


def test_quantize_to_a_k_quant_with_a_chosen_name(stored: Store) -> None:
    model = stored.quantize("tiny:f32", "q4_k_m", target_name="acme/tiny:small")
    assert str(model.name) == "acme/tiny:small"
    assert model.info.quantization == "Q4_K_M"
    assert model.model_path.stat().st_size < stored.resolve("tiny:f32").size / 5


def test_requantize_is_allowed_and_warned_about(
    stored: Store, caplog: pytest.LogCaptureFixture
) -> None:
    stored.quantize("tiny:f32", "Q8_0")
    with caplog.at_level(logging.WARNING):
        model = stored.quantize("tiny:f32-q8_0", "Q4_0")
    assert model.info.quantization == "Q4_0"
    assert "requantizing" in caplog.text


def test_a_refused_quantization_says_why_and_changes_nothing(stored: Store) -> None:
    before = sorted(p.name for p in stored.blobs.root.iterdir())
    with pytest.raises(QuantizationError, match="requires an imatrix"):
        stored.quantize("tiny:f32", "IQ2_XXS")
    assert sorted(p.name for p in stored.blobs.root.iterdir()) == before


def test_an_interrupted_quantization_leaves_nothing(stored: Store) -> None:
    def interrupt(done: int, total: int | None) -> None:
        if done == 3:
            raise KeyboardInterrupt

    before = sorted(p.name for p in stored.blobs.root.iterdir())
    with pytest.raises(KeyboardInterrupt):
        stored.quantize("tiny:f32", "Q8_0", progress=interrupt)
    assert sorted(p.name for p in stored.blobs.root.iterdir()) == before
    assert [str(m.name) for m in stored.list()] == ["tiny:f32"]


def write_imatrix(path: Path, model: Path) -> Path:
    """An importance matrix in llama-imatrix's GGUF format: sums of squared activations per
    input column (here random) and how many tokens were counted."""
    writer = gguf.GGUFWriter(str(path), "imatrix")
    rng = np.random.default_rng(0)
    for tensor in gguf.GGUFReader(model).tensors:
        if len(tensor.shape) == 2 and tensor.name != "token_embd.weight":
            columns = int(tensor.shape[0])
            writer.add_tensor(
                f"{tensor.name}.in_sum2", rng.random((1, columns), dtype=np.float32) * 64
            )
            writer.add_tensor(f"{tensor.name}.counts", np.array([[64.0]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_importance_matrix_enables_iq_quants(
    stored: Store, f32_model: Path, tmp_path: Path
) -> None:
    imatrix = write_imatrix(tmp_path / "imatrix.gguf", f32_model)
    model = stored.quantize("tiny:f32", "IQ2_XXS", imatrix=imatrix)
    assert model.info.quantization == "IQ2_XXS"
    assert math.isfinite(perplexity(model.model_path).perplexity)


def test_a_bad_importance_matrix_is_refused(stored: Store, tmp_path: Path) -> None:
    bogus = tmp_path / "imatrix.dat"
    bogus.write_bytes(b"not an imatrix")
    with pytest.raises(QuantizationError, match="llama-imatrix"):
        stored.quantize("tiny:f32", "Q4_K_M", imatrix=bogus)


@pytest.mark.gemma
def test_gemma_requantized_to_q8_0_keeps_its_quality(gemma_model: Path, tmp_path: Path) -> None:
    # llama.cpp directly: the store's part is covered above, and importing Gemma into a store
    # costs ~11 s of gguf-py parsing that says nothing about quantization.
    target = tmp_path / "gemma-q8_0.gguf"
    _, ftype = parse_quant_type("Q8_0")
    calls: list[tuple[int, int | None]] = []
    started = time.monotonic()
    options = QuantizeOptions(ftype, threads=2, allow_requantize=True)
    quantize_gguf(gemma_model, target, options, lambda d, t: calls.append((d, t)))
    assert time.monotonic() - started < 30
    assert calls[-1] == (236, 236)
    assert gguf.GGUFReader(target).get_field("general.file_type").contents() == 7
    before = perplexity(gemma_model).perplexity
    after = perplexity(target).perplexity
    # Q8_0 from Q4_K_M: the Q4_K weights fit Q8_0 almost exactly (measured 25.71 → 25.99).
    assert after == pytest.approx(before, rel=0.05)


def test_hearth_quantize_prints_sizes_and_perplexity(hearth_home: Path, stored: Store) -> None:
    from tests.cli.process import run_hearth

    done = run_hearth(hearth_home, "quantize", "tiny:f32", "--to", "q8_0")
    assert done.returncode == 0, done.stderr
    assert "PERPLEXITY" in done.stdout and "tiny:f32-q8_0" in done.stdout
    assert "quantized tiny:f32 to tiny:f32-q8_0" in done.stdout
    again = run_hearth(hearth_home, "quantize", "tiny:f32-q8_0", "--to", "Q4_0", "--no-eval")
    assert again.returncode == 0, again.stderr
    assert "requantizing" in again.stderr
    bad = run_hearth(hearth_home, "quantize", "tiny:f32", "--to", "Q9")
    assert bad.returncode == 1 and "must be one of" in bad.stderr
