from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.errors import InvalidModelFileError
from hearth.store import read_gguf_info


def test_reads_tiny_model(tiny_model: Path) -> None:
    info = read_gguf_info(tiny_model)
    spec = TinyModelSpec()
    vocab, embd, ff, layers = 259, spec.n_embd, spec.n_ff, spec.n_layers
    kv = embd // spec.n_heads * spec.n_kv_heads
    per_layer = 2 * embd + 2 * embd * embd + 2 * kv * embd + 3 * ff * embd
    assert info.architecture == "llama"
    assert info.name == "tiny-llama"
    assert info.parameter_count == 2 * vocab * embd + embd + layers * per_layer
    assert info.quantization == "F32"
    assert info.context_length == 2048
    assert info.license == "apache-2.0"
    assert info.chat_template is None
    assert info.tensor_count == 3 + 9 * layers
    assert info.file_size == tiny_model.stat().st_size


def test_reads_chat_template_and_license(tiny_chat_gguf: Path) -> None:
    info = read_gguf_info(tiny_chat_gguf)
    assert info.chat_template == "{{ messages }}"
    assert info.license == "mit"


def test_no_license_no_file_type_falls_back_to_dominant_tensor_type(tmp_path: Path) -> None:
    path = tmp_path / "f16.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("big.weight", np.zeros((64, 64), dtype=np.float16))
    writer.add_tensor("small.weight", np.zeros(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_gguf_info(path)
    assert info.quantization == "F16"
    assert info.license is None
    assert info.context_length is None
    assert info.parameter_count == 64 * 64 + 64


def test_more_layers_more_parameters(tmp_path: Path, tiny_model: Path) -> None:
    bigger = write_tiny_gguf(tmp_path / "big.gguf", TinyModelSpec(n_layers=4))
    assert read_gguf_info(bigger).parameter_count > read_gguf_info(tiny_model).parameter_count


@pytest.mark.parametrize("keep", [0.999, 0.9, 0.5, 0.05])
def test_truncated_copy_is_rejected(tmp_path: Path, tiny_model: Path, keep: float) -> None:
    data = tiny_model.read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InvalidModelFileError, match="is truncated") as caught:
        read_gguf_info(truncated)
    assert "\n" not in str(caught.value)
    assert str(truncated) in str(caught.value)


def test_header_only_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "header.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3))
    with pytest.raises(InvalidModelFileError, match="truncated or corrupt"):
        read_gguf_info(path)


def test_unsupported_version_is_rejected(tmp_path: Path, tiny_model: Path) -> None:
    data = bytearray(tiny_model.read_bytes())
    data[4:8] = struct.pack("<I", 99)
    path = tmp_path / "v99.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError, match="version 99"):
        read_gguf_info(path)


def test_corrupt_counts_are_rejected(tmp_path: Path, tiny_model: Path) -> None:
    data = bytearray(tiny_model.read_bytes())
    data[8:16] = struct.pack("<Q", 2**40)  # tensor count far beyond what the file holds
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFileError):
        read_gguf_info(path)


def test_random_bytes_are_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InvalidModelFileError, match=r"is not a GGUF file$"):
        read_gguf_info(path)


def test_random_bytes_after_magic_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "noise.gguf"
    path.write_bytes(b"GGUF" + np.random.default_rng(1).bytes(4096))
    with pytest.raises(InvalidModelFileError):
        read_gguf_info(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    with pytest.raises(InvalidModelFileError, match=r"is not a GGUF file \(it is empty\)"):
        read_gguf_info(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# Not a model\n")
    with pytest.raises(InvalidModelFileError, match=f"{path} is not a GGUF file"):
        read_gguf_info(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFileError, match="does not exist"):
        read_gguf_info(tmp_path / "nope.gguf")
    with pytest.raises(InvalidModelFileError, match="is a directory"):
        read_gguf_info(tmp_path)
