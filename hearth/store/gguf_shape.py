"""A model's shape (layers, heads, head sizes, vocabulary, sliding window) from its GGUF metadata.

The engine's memory estimate needs a dozen numbers from the metadata before a model is loaded.
gguf-py's reader parses every field into numpy views, which takes about 10 s for a 262k-token
vocabulary (Gemma 3), so :func:`read_gguf_shape` scans the metadata section itself: scalars are
decoded, long arrays (the vocabulary) are skipped and only counted, and the tensor index is never
read. It takes well under a second for Gemma. :func:`shape_from_metadata` turns either reader's
key/value pairs into a :class:`ModelShape`, so there is one interpretation of the keys.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from hearth.errors import InvalidModelFileError

_KEYS_LLM = gguf.Keys.LLM
_KEYS_ATTENTION = gguf.Keys.Attention
_TOKENS = gguf.Keys.Tokenizer.LIST

# Architectures whose sliding-window layout llama.cpp hard-codes when the GGUF has no
# ``{arch}.attention.sliding_window_pattern``: every n-th layer is global, the rest slide.
KNOWN_SWA_PERIODS = {"gemma2": 2, "gemma3": 6, "cohere2": 4}

_V = gguf.GGUFValueType
_SCALAR_FORMATS = {
    _V.UINT8: "B",
    _V.INT8: "b",
    _V.UINT16: "H",
    _V.INT16: "h",
    _V.UINT32: "I",
    _V.INT32: "i",
    _V.FLOAT32: "f",
    _V.BOOL: "?",
    _V.UINT64: "Q",
    _V.INT64: "q",
    _V.FLOAT64: "d",
}
_MAX_DECODED_ARRAY = 65536  # per-layer arrays are decoded; vocabularies are only counted


@dataclass(frozen=True)
class ModelShape:
    """What sizes a llama.cpp context: per-layer KV widths, vocabulary, activations."""

    architecture: str
    n_layers: int
    n_embd: int
    n_ff: int  # widest feed-forward layer; 0 if unknown
    n_vocab: int
    context_length: int | None  # training context; llama.cpp caps a sequence at it
    n_head_kv: tuple[int, ...]  # per layer
    key_length: int  # per head
    value_length: int  # per head
    sliding_window: int | None  # tokens a sliding-window layer attends to
    swa_layers: tuple[bool, ...]  # per layer: True where the layer uses the sliding window

    def kv_width(self, layer: int) -> int:
        """Elements one KV cell holds for ``layer``: n_embd_k_gqa + n_embd_v_gqa."""
        return self.n_head_kv[layer] * (self.key_length + self.value_length)


def shape_from_metadata(metadata: Mapping[str, Any], n_vocab: int | None = None) -> ModelShape:
    """Interpret GGUF key/value pairs (scalars, numeric lists) the way llama.cpp's loader does."""
    arch = metadata.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFileError("GGUF file has no general.architecture")

    def get(key: str) -> Any:
        return metadata.get(key.format(arch=arch))

    n_layers = _int(get(_KEYS_LLM.BLOCK_COUNT))
    n_embd = _int(get(_KEYS_LLM.EMBEDDING_LENGTH))
    n_head = _per_layer(get(_KEYS_ATTENTION.HEAD_COUNT), n_layers, 0)
    n_head_kv = _per_layer(get(_KEYS_ATTENTION.HEAD_COUNT_KV), n_layers, None) or n_head
    n_ff = _per_layer(get(_KEYS_LLM.FEED_FORWARD_LENGTH), n_layers, 0)
    most_heads = max(n_head, default=0)
    head_dim = n_embd // most_heads if most_heads else 0
    window = get(_KEYS_ATTENTION.SLIDING_WINDOW)
    vocab_size = get(_KEYS_LLM.VOCAB_SIZE)
    return ModelShape(
        architecture=arch,
        n_layers=n_layers,
        n_embd=n_embd,
        n_ff=max(n_ff, default=0),
        n_vocab=_int(vocab_size) if vocab_size is not None else n_vocab or 0,
        context_length=_optional_int(get(_KEYS_LLM.CONTEXT_LENGTH)),
        n_head_kv=n_head_kv,
        key_length=_int(get(_KEYS_ATTENTION.KEY_LENGTH) or head_dim),
        value_length=_int(get(_KEYS_ATTENTION.VALUE_LENGTH) or head_dim),
        sliding_window=_optional_int(window) or None,
        swa_layers=_swa_layers(arch, window, get(_KEYS_ATTENTION.SLIDING_WINDOW_PATTERN), n_layers),
    )


def read_gguf_shape(path: Path) -> ModelShape:
    """The shape of the model in ``path``, read from its metadata alone (fast; see module doc)."""
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            metadata, lengths = _MetadataScanner(data).scan()
    except (OSError, ValueError, struct.error, KeyError) as error:
        raise InvalidModelFileError(f"{path}: cannot read GGUF metadata ({error})") from None
    return shape_from_metadata(metadata, lengths.get(_TOKENS))


@dataclass(frozen=True)
class TensorEntry:
    """One row of a GGUF tensor index: ``dims`` in GGUF order (``dims[0]`` is the row length)."""

    name: str
    dims: tuple[int, ...]
    type: int  # gguf.GGMLQuantizationType value

    @property
    def n_elements(self) -> int:
        return math.prod(self.dims)


@dataclass(frozen=True)
class GGUFHeader:
    """Metadata and tensor index of a GGUF, without the tensor data."""

    shape: ModelShape
    tensors: tuple[TensorEntry, ...]
    file_type: int | None  # general.file_type
    size: int  # bytes up to the end of the tensor index


def parse_gguf_header(data: bytes | mmap.mmap) -> GGUFHeader:
    """The header at the start of ``data`` (a whole file, or only its first bytes).

    Raises ``struct.error`` or ValueError when ``data`` ends before the tensor index does, so a
    caller reading over the network can fetch more and try again.
    """
    scanner = _MetadataScanner(data)
    metadata, lengths = scanner.scan()
    tensors = scanner.tensors()
    file_type = metadata.get(gguf.Keys.General.FILE_TYPE)
    return GGUFHeader(
        shape=shape_from_metadata(metadata, lengths.get(_TOKENS)),
        tensors=tensors,
        file_type=file_type if isinstance(file_type, int) else None,
        size=scanner.position,
    )


def _swa_layers(arch: str, window: Any, pattern: Any, n_layers: int) -> tuple[bool, ...]:
    if not window:
        return (False,) * n_layers
    if isinstance(pattern, list):
        return tuple(bool(flag) for flag in pattern[:n_layers]) + (False,) * (
            n_layers - len(pattern)
        )
    if pattern is not None:  # one value for every layer, as llama.cpp's get_key_or_arr reads it
        return (bool(pattern),) * n_layers
    period = KNOWN_SWA_PERIODS.get(arch)
    if period is None:  # unknown layout: count every layer as global (an overestimate)
        return (False,) * n_layers
    return tuple(layer % period < period - 1 for layer in range(n_layers))


def _per_layer(value: Any, n_layers: int, default: int | None) -> tuple[int, ...]:
    if value is None:
        return () if default is None else (default,) * n_layers
    if not isinstance(value, list):
        return (_int(value),) * n_layers
    values = [_int(v) for v in value[:n_layers]]
    return tuple(values + [values[-1] if values else 0] * (n_layers - len(values)))


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidModelFileError(f"GGUF metadata holds {value!r} where a number belongs")
    return int(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


class _MetadataScanner:
    """Walks the GGUF header and key/value section (format v2/v3, either byte order)."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self._data = data
        self._pos = 0
        self._order = "<"
        self._tensor_count = 0

    @property
    def position(self) -> int:
        return self._pos

    def scan(self) -> tuple[dict[str, Any], dict[str, int]]:
        if self._data[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        self._pos = 4
        version = self._read("I")
        if version & 0xFFFF == 0:  # written big-endian
            self._order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")
        self._tensor_count = self._read("Q")
        kv_count = self._read("Q")
        values: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for _ in range(kv_count):
            key = self._string()
            kind = _V(self._read("I"))
            if kind == _V.ARRAY:
                values[key], lengths[key] = self._array()
            else:
                values[key] = self._scalar(kind)
        return values, lengths

    def tensors(self) -> tuple[TensorEntry, ...]:
        """The tensor index, which follows the key/value section (call after :meth:`scan`)."""
        entries = []
        for _ in range(self._tensor_count):
            name = self._string()
            dims = tuple(self._read("Q") for _ in range(self._read("I")))
            kind = self._read("I")
            self._read("Q")  # offset into the data section
            entries.append(TensorEntry(name, dims, kind))
        return tuple(entries)

    def _read(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(self._order + fmt, self._data, self._pos)
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        size = self._read("Q")
        end = self._pos + size
        if end > len(self._data):
            raise ValueError("a string runs past the end of the file")
        text = self._data[self._pos : end].decode("utf-8", errors="replace")
        self._pos = end
        return text

    def _scalar(self, kind: gguf.GGUFValueType) -> Any:
        return self._string() if kind == _V.STRING else self._read(_SCALAR_FORMATS[kind])

    def _array(self) -> tuple[list[Any] | None, int]:
        kind = _V(self._read("I"))
        count = self._read("Q")
        fmt = _SCALAR_FORMATS.get(kind)
        if fmt is not None and count <= _MAX_DECODED_ARRAY:
            items = struct.unpack_from(f"{self._order}{count}{fmt}", self._data, self._pos)
            self._pos += count * struct.calcsize(fmt)
            return list(items), count
        self._skip_items(kind, count)
        return None, count

    def _skip_items(self, kind: gguf.GGUFValueType, count: int) -> None:
        fmt = _SCALAR_FORMATS.get(kind)
        if fmt is not None:
            self._pos += count * struct.calcsize(fmt)
        elif kind == _V.STRING:
            length = struct.Struct(self._order + "Q").unpack_from
            data, pos = self._data, self._pos
            for _ in range(count):
                pos += 8 + length(data, pos)[0]
            self._pos = pos
        else:  # arrays of arrays
            for _ in range(count):
                self._array()
        if self._pos > len(self._data):
            raise ValueError("an array runs past the end of the file")
