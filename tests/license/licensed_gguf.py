"""Tiny GGUF files whose license metadata says what a test wants."""

from __future__ import annotations

from pathlib import Path

import gguf

from hearth.devtools import tiny_gguf


def write_licensed_gguf(
    path: Path,
    license: str | None,
    *,
    license_name: str | None = None,
    license_link: str | None = None,
) -> Path:
    """A tiny loadable llama GGUF whose general.license(.name/.link) say what the test wants."""
    spec = tiny_gguf.TinyModelSpec(license=license, n_layers=1)
    tokens, types = tiny_gguf.byte_vocabulary()
    writer = gguf.GGUFWriter(str(path), "llama")
    tiny_gguf._add_metadata(writer, spec, tokens, types)
    if license_name:
        writer.add_string("general.license.name", license_name)
    if license_link:
        writer.add_string("general.license.link", license_link)
    for name, tensor in tiny_gguf._weights(spec, len(tokens)).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
