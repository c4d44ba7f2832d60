"""A strict, bounded check of a GGUF file's header before any other parser trusts it.

GGUF files come from the Internet. gguf-py's reader and llama.cpp's loader size their buffers
from the counts and lengths the file declares, and llama.cpp reads each tensor at the offset the
file declares: a header that lies causes huge allocations, crashes (CVE-2024-39720) or reads past
the end of the mapping. :func:`check_gguf` walks the header, the key/value section and the tensor
index with every count and length bounded by the bytes left in the file and by a fixed limit,
then checks each tensor's byte range (from its type and shape, with gguf's block sizes) against
the data section. It reads no tensor data and decodes no value but ``general.alignment`` and
``{arch}.block_count`` (readers build per-layer tables from it), so it holds only the tensor
index in memory and takes a fraction of a second for a 262k-token vocabulary. Every problem is
one :class:`MalformedFileError` that says what is wrong and where.
"""

from __future__ import annotations

import itertools
import math
import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import gguf

from hearth.errors import InvalidModelFileError, MalformedFileError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # llama.cpp reads these; v1 (32-bit counts) is long gone
MAX_TENSORS = 1 << 18  # real models have a few thousand; each entry is held in memory
MAX_KEYS = 1 << 20
MAX_KEY_BYTES = 1 << 16
MAX_TENSOR_NAME_BYTES = 63  # llama.cpp's GGML_MAX_NAME (64) counts the terminating NUL
MAX_STRING_BYTES = 1 << 28  # a chat template or license text is kilobytes
MAX_ARRAY_ITEMS = 1 << 28  # a vocabulary is at most a few hundred thousand tokens
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_DIM = 1 << 40
MAX_ALIGNMENT = 1 << 16
# Readers build per-layer tables from {arch}.block_count (real models have at most a few
# hundred layers); a forged count must not become a multi-gigabyte tuple.
MAX_BLOCKS = 1 << 16
_BLOCK_COUNT_SUFFIX = ".block_count"

_V = gguf.GGUFValueType
_FIXED_SIZES = {
    _V.UINT8: 1,
    _V.INT8: 1,
    _V.BOOL: 1,
    _V.UINT16: 2,
    _V.INT16: 2,
    _V.UINT32: 4,
    _V.INT32: 4,
    _V.FLOAT32: 4,
    _V.UINT64: 8,
    _V.INT64: 8,
    _V.FLOAT64: 8,
}
_INTEGER_TYPES = {
    _V.UINT8: "B",
    _V.INT8: "b",
    _V.UINT16: "H",
    _V.INT16: "h",
    _V.UINT32: "I",
    _V.INT32: "i",
    _V.UINT64: "Q",
    _V.INT64: "q",
}
_VALUE_TYPES = {int(kind) for kind in _V}
_QUANT_SIZES = {int(kind): sizes for kind, sizes in gguf.GGML_QUANT_SIZES.items()}
_ALIGNMENT_KEY = gguf.Keys.General.ALIGNMENT
# The smallest possible entries, which bound a declared count by the bytes left.
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, dims count, type, offset


@dataclass(frozen=True)
class GGUFLayout:
    """What the check learned: enough to say where each part of the file is."""

    version: int
    kv_count: int
    tensor_count: int
    alignment: int
    data_offset: int  # where the data section starts
    data_end: int  # where the last tensor's data ends (relative to the file)
    file_size: int


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    dims: tuple[int, ...]
    type: int
    offset: int  # relative to the data section


def check_gguf(path: Path) -> GGUFLayout:
    """Check ``path``'s header; raise :class:`MalformedFileError` (or InvalidModelFileError when
    the file cannot be opened) naming the first problem found."""
    try:
        with path.open("rb") as file:
            size = _file_size(path, file.fileno())
            if size < len(MAGIC):
                raise MalformedFileError(f"{path}: not a GGUF file ({size} bytes)")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return check_gguf_bytes(data, str(path))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise InvalidModelFileError(f"{path}: cannot open ({error.strerror})") from None


def check_gguf_bytes(data: bytes | mmap.mmap, label: str = "GGUF") -> GGUFLayout:
    """The same check on bytes already in memory (a whole file); ``label`` starts each error."""
    return _Checker(data, label).check()


def _file_size(path: Path, fileno: int) -> int:
    status = os.fstat(fileno)  # the open descriptor's, not the path's: it may be replaced
    if not stat.S_ISREG(status.st_mode):
        raise InvalidModelFileError(f"{path}: not a regular file")
    return status.st_size


class _Checker:
    """One pass over the header; ``_pos`` never moves past ``_size`` without an error."""

    def __init__(self, data: bytes | mmap.mmap, label: str) -> None:
        self._data = data
        self._size = len(data)
        self._label = label
        self._pos = 0
        self._order = "<"
        self._alignment = gguf.GGUF_DEFAULT_ALIGNMENT

    def check(self) -> GGUFLayout:
        version = self._header()
        tensor_count = self._count("tensor count", MAX_TENSORS, _MIN_TENSOR_INFO_BYTES)
        kv_count = self._count("key/value count", MAX_KEYS, _MIN_KV_BYTES)
        self._key_values(kv_count)
        tensors = [self._tensor_info(index) for index in range(tensor_count)]
        data_offset = _round_up(self._pos, self._alignment)
        if data_offset > self._size:
            self._fail(f"the data section would start at byte {data_offset}, past the end")
        data_end = self._check_tensor_data(tensors, data_offset)
        return GGUFLayout(
            version=version,
            kv_count=kv_count,
            tensor_count=tensor_count,
            alignment=self._alignment,
            data_offset=data_offset,
            data_end=data_end,
            file_size=self._size,
        )

    # Header and key/values -------------------------------------------------------------------

    def _header(self) -> int:
        if self._data[: len(MAGIC)] != MAGIC:
            self._fail("not a GGUF file (no GGUF magic)")
        self._pos = len(MAGIC)
        version = self._u32("version")
        if version & 0xFFFF == 0 and version != 0:  # written big-endian
            self._order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in SUPPORTED_VERSIONS:
            self._fail(f"unsupported GGUF version {version} (expected 2 or 3)")
        return int(version)

    def _count(self, what: str, limit: int, min_entry_bytes: int) -> int:
        count = self._u64(what)
        bound = min(limit, (self._size - self._pos) // min_entry_bytes)
        if count > bound:
            self._fail(f"{what} {count} is impossible (at most {bound} fit in the file)")
        return count

    def _key_values(self, count: int) -> None:
        seen: set[str] = set()
        for index in range(count):
            key = self._text(f"key #{index}", MAX_KEY_BYTES)
            if key in seen:
                self._fail(f"duplicate key {key!r}")
            seen.add(key)
            kind = self._value_type(f"key {key!r}")
            if key == _ALIGNMENT_KEY:
                self._alignment_value(kind)
            elif key.endswith(_BLOCK_COUNT_SUFFIX) and kind in _INTEGER_TYPES:
                self._block_count(key, kind)
            elif kind == _V.ARRAY:
                self._array(key)
            else:
                self._skip_value(kind, key)

    def _alignment_value(self, kind: int) -> None:
        if kind != _V.UINT32:
            self._fail(f"{_ALIGNMENT_KEY} has value type {kind}, expected UINT32")
        alignment = self._u32(_ALIGNMENT_KEY)
        if alignment == 0 or alignment & (alignment - 1) or alignment > MAX_ALIGNMENT:
            self._fail(f"{_ALIGNMENT_KEY} {alignment} is not a power of two up to {MAX_ALIGNMENT}")
        self._alignment = alignment

    def _block_count(self, key: str, kind: int) -> None:
        value = self._unpack(_INTEGER_TYPES[_V(kind)], _FIXED_SIZES[_V(kind)], key)
        if not 0 <= value <= MAX_BLOCKS:
            self._fail(f"{key} {value} is out of range (0..{MAX_BLOCKS})")

    def _value_type(self, where: str) -> int:
        kind = self._u32(f"value type of {where}")
        if kind not in _VALUE_TYPES:
            self._fail(f"{where} has unknown value type {kind}")
        return kind

    def _skip_value(self, kind: int, key: str) -> None:
        if kind == _V.STRING:
            self._skip_string(f"value of {key!r}")
        else:
            self._advance(_FIXED_SIZES[_V(kind)], f"value of {key!r}")

    def _array(self, key: str) -> None:
        kind = self._value_type(f"array {key!r}")
        if kind == _V.ARRAY:  # llama.cpp refuses nested arrays too
            self._fail(f"array {key!r} holds arrays (nested arrays are not allowed)")
        count = self._u64(f"length of array {key!r}")
        item_bytes = _FIXED_SIZES.get(_V(kind), 8)  # a string item is at least its length field
        bound = min(MAX_ARRAY_ITEMS, (self._size - self._pos) // item_bytes)
        if count > bound:
            self._fail(f"array {key!r} claims {count} items; at most {bound} fit in the file")
        if kind == _V.STRING:
            self._skip_strings(count, key)
        else:
            self._advance(count * item_bytes, f"array {key!r}")

    def _skip_strings(self, count: int, key: str) -> None:
        unpack = struct.Struct(self._order + "Q").unpack_from
        data, pos, size = self._data, self._pos, self._size
        for index in range(count):  # the hot loop for a vocabulary: keep it bare
            if pos + 8 > size:
                self._fail_at(pos, f"array {key!r} ends early at item {index}")
            pos += 8 + unpack(data, pos)[0]
        if pos > size:
            self._fail_at(pos, f"a string in array {key!r} runs past the end")
        self._pos = pos

    # Tensor index and data -------------------------------------------------------------------

    def _tensor_info(self, index: int) -> _TensorInfo:
        name = self._text(f"name of tensor #{index}", MAX_TENSOR_NAME_BYTES)
        n_dims = self._u32(f"dimension count of tensor {name!r}")
        if n_dims > MAX_DIMS:
            self._fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = tuple(self._u64(f"dimensions of tensor {name!r}") for _ in range(n_dims))
        if any(not 0 < dim <= MAX_DIM for dim in dims):
            self._fail(f"tensor {name!r} has dimensions {dims}; each must be 1..{MAX_DIM}")
        kind = self._u32(f"type of tensor {name!r}")
        if kind not in _QUANT_SIZES:
            self._fail(f"tensor {name!r} has unknown type {kind}")
        offset = self._u64(f"offset of tensor {name!r}")
        return _TensorInfo(name, dims, kind, offset)

    def _check_tensor_data(self, tensors: list[_TensorInfo], data_offset: int) -> int:
        names: set[str] = set()
        spans: list[tuple[int, int, str]] = []
        for tensor in tensors:
            if tensor.name in names:
                self._fail(f"duplicate tensor name {tensor.name!r}")
            names.add(tensor.name)
            start = data_offset + tensor.offset
            end = start + self._tensor_bytes(tensor)
            if tensor.offset % self._alignment:
                self._fail(
                    f"tensor {tensor.name!r} offset {tensor.offset} is not a multiple of the "
                    f"alignment {self._alignment}"
                )
            if end > self._size:
                self._fail(
                    f"tensor {tensor.name!r} data (bytes {start}..{end}) runs past the end of "
                    f"the file ({self._size} bytes): truncated or forged"
                )
            spans.append((start, end, tensor.name))
        spans.sort()
        for (_, end, name), (start, _, other) in itertools.pairwise(spans):
            if start < end:
                self._fail(f"tensors {name!r} and {other!r} overlap")
        return max((end for _, end, _ in spans), default=data_offset)

    def _tensor_bytes(self, tensor: _TensorInfo) -> int:
        block, block_bytes = _QUANT_SIZES[tensor.type]
        row = tensor.dims[0] if tensor.dims else 1
        if row % block:
            type_name = gguf.GGMLQuantizationType(tensor.type).name
            self._fail(
                f"tensor {tensor.name!r} rows of {row} elements are not a multiple of {type_name}'s"
                f" block size {block}"
            )
        return math.prod(tensor.dims) // block * block_bytes

    # Primitive reads: each checks the bytes are there first ----------------------------------

    def _u32(self, what: str) -> int:
        return int(self._unpack("I", 4, what))

    def _u64(self, what: str) -> int:
        return int(self._unpack("Q", 8, what))

    def _unpack(self, fmt: str, size: int, what: str) -> int:
        if self._pos + size > self._size:
            self._fail(f"the file ends inside the {what}")
        (value,) = struct.unpack_from(self._order + fmt, self._data, self._pos)
        self._pos += size
        return int(value)

    def _text(self, what: str, limit: int) -> str:
        length = self._string_length(what, limit)
        raw = bytes(self._data[self._pos : self._pos + length])
        self._pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(f"the {what} is not UTF-8")

    def _skip_string(self, what: str) -> None:
        length = self._string_length(what, MAX_STRING_BYTES)  # moves past the length field
        self._pos += length

    def _string_length(self, what: str, limit: int) -> int:
        length = self._u64(f"length of the {what}")
        if length > limit or self._pos + length > self._size:
            self._fail(f"the {what} claims {length} bytes (limit {limit}, {self._left()} left)")
        return length

    def _advance(self, count: int, what: str) -> None:
        if self._pos + count > self._size:
            self._fail(f"the {what} runs past the end of the file")
        self._pos += count

    def _left(self) -> int:
        return self._size - self._pos

    def _fail(self, message: str) -> NoReturn:
        self._fail_at(self._pos, message)

    def _fail_at(self, position: int, message: str) -> NoReturn:
        raise MalformedFileError(
            f"{self._label} is truncated or corrupt (malformed GGUF at byte {position}: {message})"
        )


def _round_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment
