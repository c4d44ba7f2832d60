"""What a GGUF file says about itself, read with gguf-py's reader and checked before we trust it.

The reader memory-maps the file and parses the header, metadata and tensor index; it raises
whatever numpy or Python raise on truncated or corrupt input. :func:`read_gguf_info` turns all
of that into one readable :class:`InvalidModelFileError` line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from hearth.errors import InvalidModelFileError
from hearth.store.gguf_check import check_gguf
from hearth.store.gguf_shape import ModelShape, shape_from_metadata

GGUF_MAGIC = b"GGUF"
_FILE_TYPE_PREFIXES = ("MOSTLY_", "ALL_")


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str | None
    parameter_count: int
    quantization: str
    context_length: int | None
    license: str | None
    chat_template: str | None
    tensor_count: int
    file_size: int
    shape: ModelShape  # what the engine's memory estimate needs


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read and sanity-check ``path``; InvalidModelFileError if it is not a usable GGUF."""
    file_size = _check_magic(path)
    check_gguf(path)  # bounded header check before gguf-py sizes anything from the file
    try:
        reader = gguf.GGUFReader(path)
    except Exception as error:  # the reader fails in many ways on bad input; all mean one thing
        raise InvalidModelFileError(
            f"{path} is truncated or corrupt (GGUF reader: {_one_line(error)})"
        ) from None
    _check_tensor_bounds(path, reader, file_size)
    try:
        return _info(reader, file_size)
    except InvalidModelFileError:
        raise
    except Exception as error:
        raise InvalidModelFileError(f"{path} has unreadable metadata: {_one_line(error)}") from None


def _check_magic(path: Path) -> int:
    try:
        with path.open("rb") as file:
            magic = file.read(len(GGUF_MAGIC))
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidModelFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidModelFileError(f"{path} is a directory, not a GGUF file") from None
    if magic != GGUF_MAGIC:
        why = " (it is empty)" if size == 0 else ""
        raise InvalidModelFileError(f"{path} is not a GGUF file{why}")
    return size


def _check_tensor_bounds(path: Path, reader: gguf.GGUFReader, file_size: int) -> None:
    # A truncated download can still parse; its last tensors would then point past the end.
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > file_size:
            raise InvalidModelFileError(
                f"{path} is truncated: tensor {tensor.name} ends at byte {end}, "
                f"the file has {file_size}"
            )


def _info(reader: gguf.GGUFReader, file_size: int) -> GGUFInfo:
    architecture = _field(reader, gguf.Keys.General.ARCHITECTURE)
    if not isinstance(architecture, str) or not architecture:
        raise InvalidModelFileError("GGUF file has no general.architecture")
    context_length = _field(reader, gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=architecture))
    return GGUFInfo(
        architecture=architecture,
        name=_optional_str(_field(reader, gguf.Keys.General.NAME)),
        parameter_count=sum(int(tensor.n_elements) for tensor in reader.tensors),
        quantization=_quantization(reader),
        context_length=int(context_length) if context_length is not None else None,
        license=_optional_str(_field(reader, gguf.Keys.General.LICENSE)),
        chat_template=_optional_str(_field(reader, gguf.Keys.Tokenizer.CHAT_TEMPLATE)),
        tensor_count=len(reader.tensors),
        file_size=file_size,
        shape=_shape(reader, architecture),
    )


def _shape(reader: gguf.GGUFReader, architecture: str) -> ModelShape:
    prefix = f"{architecture}."
    metadata = {
        name: field.contents()
        for name, field in reader.fields.items()
        if name.startswith(prefix) or name == gguf.Keys.General.ARCHITECTURE
    }
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    return shape_from_metadata(metadata, len(tokens.data) if tokens is not None else None)


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    return None if field is None else field.contents()


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _quantization(reader: gguf.GGUFReader) -> str:
    """``general.file_type`` as llama.cpp names it (Q4_K_M, F32), else the dominant tensor type."""
    file_type = _field(reader, gguf.Keys.General.FILE_TYPE)
    try:
        kind = gguf.LlamaFileType(int(file_type))
    except (TypeError, ValueError):
        kind = gguf.LlamaFileType.GUESSED
    if kind != gguf.LlamaFileType.GUESSED:
        return _strip_prefix(kind.name)
    return _dominant_tensor_type(reader)


def _strip_prefix(name: str) -> str:
    for prefix in _FILE_TYPE_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _dominant_tensor_type(reader: gguf.GGUFReader) -> str:
    bytes_by_type: Counter[str] = Counter()
    for tensor in reader.tensors:
        bytes_by_type[tensor.tensor_type.name] += int(tensor.n_bytes)
    if not bytes_by_type:
        return "unknown"
    return bytes_by_type.most_common(1)[0][0]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
