"""The header checks run where untrusted files enter: importing a GGUF into the store, loading
one into llama.cpp, and reading a safetensors folder for conversion."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.engine.llm import LLM, EngineConfig
from hearth.errors import MalformedFileError
from hearth.store import Store
from tests.fuzz.test_fuzz_gguf import ARCH, F32_8, _file, _tensor

# gguf-py reads this file happily; its two tensors share the same bytes.
OVERLAPPING = _file([ARCH], [F32_8, _tensor(b"b", [8], 0, 0)], b"\0" * 64)


def test_import_refuses_a_forged_gguf_and_stores_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "forged.gguf"
    path.write_bytes(OVERLAPPING)
    store = Store(settings)
    with pytest.raises(MalformedFileError, match="overlap"):
        store.import_gguf(path, "forged:latest")
    assert store.list() == []


def test_llama_cpp_never_sees_a_forged_gguf(tmp_path: Path) -> None:
    path = tmp_path / "forged.gguf"
    path.write_bytes(OVERLAPPING)
    with pytest.raises(MalformedFileError, match="overlap"):  # llama.cpp: ModelLoadError
        LLM(path, EngineConfig(context=64, max_seqs=1, batch=32, threads=1))


def test_conversion_refuses_a_forged_safetensors_header(tmp_path: Path) -> None:
    from hearth.convert.hf_folder import read_folder

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}})
    raw = header.encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    with pytest.raises(MalformedFileError, match="runs past the end"):
        read_folder(folder)
