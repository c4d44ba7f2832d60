"""A strict, bounded check of a safetensors file's header before any reader trusts it.

A safetensors file is an 8-byte little-endian length, that many bytes of JSON, then the data
section. The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the data section) and may hold a ``__metadata__`` object of strings. The
length is bounded by the file and by :data:`MAX_HEADER_BYTES` before anything is read, and each
tensor's byte range must lie inside the data section, match its dtype and shape, and not
overlap another. Only the header is read. Errors are :class:`MalformedFileError`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hearth.errors import InvalidModelFileError, MalformedFileError

LENGTH_BYTES = 8
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit
MAX_DIMS = 8
METADATA_KEY = "__metadata__"
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorSpan:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in the file
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorSpan]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def check_safetensors(path: Path) -> SafetensorsHeader:
    """Read and check ``path``'s header (never its tensor data)."""
    try:
        with path.open("rb") as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise InvalidModelFileError(f"{path}: not a regular file")
            return read_safetensors_header(file, status.st_size, str(path))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise InvalidModelFileError(f"{path}: cannot open ({error.strerror})") from None


def read_safetensors_header(file: IO[bytes], file_size: int, label: str) -> SafetensorsHeader:
    """The header of the safetensors file ``file`` (positioned at its start) of ``file_size``."""
    raw_length = file.read(LENGTH_BYTES)
    if len(raw_length) < LENGTH_BYTES:
        raise _error(label, f"{file_size} bytes is too short for a safetensors file")
    length = int.from_bytes(raw_length, "little")
    if length > min(MAX_HEADER_BYTES, file_size - LENGTH_BYTES):
        raise _error(
            label, f"header length {length} exceeds the file or the {MAX_HEADER_BYTES} limit"
        )
    raw = file.read(length)
    if len(raw) < length:
        raise _error(label, "the file ends inside the header")
    header = _json_object(raw, label)
    data_start = LENGTH_BYTES + length
    metadata = _metadata(header.pop(METADATA_KEY, {}), label)
    tensors = {
        name: _span(name, entry, data_start, file_size, label) for name, entry in header.items()
    }
    _check_overlaps(tensors, label)
    return SafetensorsHeader(tensors, metadata, data_start, file_size)


def _json_object(raw: bytes, label: str) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _error(label, f"the header is not JSON ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise _error(label, "the header is not a JSON object")
    return header


def _metadata(value: Any, label: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _error(label, f"{METADATA_KEY} must map strings to strings")
    return value


def _span(name: str, entry: Any, data_start: int, file_size: int, label: str) -> TensorSpan:
    if not isinstance(entry, dict):
        raise _error(label, f"tensor {name!r} is not an object")
    dtype: Any = entry.get("dtype")
    shape: Any = entry.get("shape")
    offsets: Any = entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _error(label, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not _int_list(shape, MAX_DIMS) or any(dim < 0 for dim in shape):
        raise _error(label, f"tensor {name!r} has an invalid shape {shape!r}")
    if not _int_list(offsets, 2) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
        raise _error(label, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = data_start + offsets[0], data_start + offsets[1]
    if end > file_size:
        raise _error(
            label, f"tensor {name!r} data (bytes {begin}..{end}) runs past the end ({file_size})"
        )
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        raise _error(
            label,
            f"tensor {name!r}: {dtype} {shape} needs {bits / 8:g} bytes, its data_offsets "
            f"span {end - begin}",
        )
    return TensorSpan(dtype, tuple(shape), begin, end)


def _int_list(value: Any, max_length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= max_length
        and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    )


def _check_overlaps(tensors: dict[str, TensorSpan], label: str) -> None:
    spans = sorted((span.begin, span.end, name) for name, span in tensors.items())
    for (_, end, name), (begin, _, other) in itertools.pairwise(spans):
        if begin < end:
            raise _error(label, f"tensors {name!r} and {other!r} overlap")


def _error(label: str, message: str) -> MalformedFileError:
    return MalformedFileError(f"{label}: malformed safetensors: {message}")
