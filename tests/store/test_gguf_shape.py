from __future__ import annotations

import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.errors import InvalidModelFileError
from hearth.store import read_gguf_info
from hearth.store.gguf_shape import read_gguf_shape


@pytest.mark.parametrize(
    "spec",
    [
        TinyModelSpec(),
        TinyModelSpec(n_layers=3, n_embd=96, n_heads=6, n_kv_heads=3, n_ff=200, seed=3),
        TinyModelSpec(quantized=True, context_length=512),
    ],
)
def test_fast_reader_agrees_with_gguf_reader(tmp_path: Path, spec: TinyModelSpec) -> None:
    path = write_tiny_gguf(tmp_path / "model.gguf", spec)
    shape = read_gguf_shape(path)
    assert shape == read_gguf_info(path).shape
    assert shape.n_layers == spec.n_layers
    assert shape.n_embd == spec.n_embd
    assert shape.n_ff == spec.n_ff
    assert shape.n_vocab == 259
    assert shape.context_length == spec.context_length
    assert shape.n_head_kv == (spec.n_kv_heads,) * spec.n_layers
    assert shape.key_length == shape.value_length == spec.n_embd // spec.n_heads
    assert shape.sliding_window is None
    assert not any(shape.swa_layers)


def write_metadata_only(path: Path, vocab: int) -> Path:
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_block_count(6)
    writer.add_embedding_length(32)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_key_length(16)
    writer.add_value_length(16)
    writer.add_sliding_window(64)
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.add_token_scores([0.0] * vocab)
    writer.add_tensor("x.weight", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_large_vocabulary_is_counted_quickly(tmp_path: Path) -> None:
    path = write_metadata_only(tmp_path / "big-vocab.gguf", vocab=200_000)
    started = time.perf_counter()
    shape = read_gguf_shape(path)
    assert time.perf_counter() - started < 2.0  # gguf's reader takes ~8 s for this file
    assert shape.n_vocab == 200_000
    assert shape.sliding_window == 64
    assert shape.swa_layers == (True,) * 5 + (False,)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.02])
def test_truncated_metadata_is_rejected(tmp_path: Path, keep: float) -> None:
    source = write_metadata_only(tmp_path / "full.gguf", vocab=2000)
    data = source.read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InvalidModelFileError, match="cannot read GGUF metadata"):
        read_gguf_shape(truncated)


def test_not_gguf_and_bad_version_are_rejected(tmp_path: Path, tiny_model: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(InvalidModelFileError, match="not a GGUF file"):
        read_gguf_shape(text)
    data = bytearray(tiny_model.read_bytes())
    data[4:8] = struct.pack("<I", 99)
    future = tmp_path / "v99.gguf"
    future.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError, match="version 99"):
        read_gguf_shape(future)
    with pytest.raises(InvalidModelFileError):
        read_gguf_shape(tmp_path / "missing.gguf")


@pytest.mark.gemma
def test_gemma_shape(gemma_model: Path) -> None:
    shape = read_gguf_shape(gemma_model)
    assert (shape.architecture, shape.n_layers, shape.n_embd, shape.n_vocab) == (
        "gemma3",
        18,
        640,
        262144,
    )
    assert shape.n_head_kv == (1,) * 18
    assert (shape.key_length, shape.value_length, shape.sliding_window) == (256, 256, 512)
    assert [layer for layer, swa in enumerate(shape.swa_layers) if not swa] == [5, 11, 17]
