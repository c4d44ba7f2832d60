"""Hostile GGUF files: the header check (and the readers behind it) give a valid result or the
clear error, never another exception, a hang or an unbounded allocation."""

from __future__ import annotations

import contextlib
import struct
import time
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.errors import InvalidModelFileError, MalformedFileError
from hearth.store.gguf_check import (
    MAX_TENSOR_NAME_BYTES,
    GGUFLayout,
    check_gguf,
    check_gguf_bytes,
)
from hearth.store.gguf_meta import read_gguf_info
from hearth.store.gguf_shape import parse_gguf_header

SMALL = TinyModelSpec(n_layers=1, n_embd=8, n_heads=2, n_kv_heads=1, n_ff=8, name="fuzz")
V = gguf.GGUFValueType
MiB = 1 << 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_tiny_gguf(tmp_path_factory.mktemp("fuzz") / "small.gguf", SMALL)
    return path.read_bytes()


def _outcome(data: bytes) -> GGUFLayout | None:
    """The check's result, None for the clear error; anything else fails the test."""
    try:
        return check_gguf_bytes(data)
    except MalformedFileError as error:
        assert "malformed GGUF" in str(error)
        return None


# Truncation and mutation of a real file -------------------------------------------------------


def test_the_tiny_gguf_passes_and_is_laid_out_as_gguf_py_says(tiny: bytes) -> None:
    layout = check_gguf_bytes(tiny)
    assert layout.version == 3 and layout.tensor_count == 12 and layout.data_end == len(tiny)
    assert layout.data_offset % layout.alignment == 0


def test_every_truncation_of_the_header_and_sampled_data_lengths_is_the_clear_error(
    tiny: bytes,
) -> None:
    data_offset = check_gguf_bytes(tiny).data_offset
    lengths = [*range(data_offset + 1), *range(data_offset + 1, len(tiny), 61), len(tiny) - 1]
    for length in lengths:
        assert _outcome(tiny[:length]) is None, f"truncated at {length} bytes passed"


def test_truncated_files_are_refused_by_the_store_reader_before_gguf_py(
    tiny: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "cut.gguf"
    for length in (0, 3, 4, 24, 100, 1000, len(tiny) // 2, len(tiny) - 1):
        path.write_bytes(tiny[:length])
        with pytest.raises(InvalidModelFileError):
            read_gguf_info(path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(
        st.tuples(st.integers(min_value=0, max_value=8000), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_headers_give_a_result_or_the_clear_error(
    tiny: bytes, tmp_path: Path, mutations: list[tuple[int, int]]
) -> None:
    data = bytearray(tiny)
    for position, value in mutations:
        data[position % len(data)] = value
    layout = _outcome(bytes(data))
    if layout is None:
        return
    # What passes the check, the other readers parse or refuse with the same error family.
    with contextlib.suppress(InvalidModelFileError):
        parse_gguf_header(bytes(data))
    path = tmp_path / "mutated.gguf"
    path.write_bytes(data)
    with contextlib.suppress(InvalidModelFileError):
        read_gguf_info(path)


# Hand-built hostile headers -------------------------------------------------------------------


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _header(tensor_count: int, kv_count: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count)


def _kv(key: bytes, kind: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", kind) + payload


def _tensor(name: bytes, dims: list[int], kind: int, offset: int) -> bytes:
    packed_dims = b"".join(struct.pack("<Q", d) for d in dims)
    return (
        _string(name)
        + struct.pack("<I", len(dims))
        + packed_dims
        + struct.pack("<IQ", kind, offset)
    )


def _file(kvs: list[bytes], tensors: list[bytes], data: bytes = b"", **header: int) -> bytes:
    head = _header(header.get("tensor_count", len(tensors)), header.get("kv_count", len(kvs)))
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * (-len(body) % 32) + data


ARCH = _kv(b"general.architecture", V.STRING, _string(b"llama"))
F32_8 = _tensor(b"a", [8], gguf.GGMLQuantizationType.F32, 0)

HOSTILE = {
    "huge tensor count": _header(1 << 62, 0),
    "huge kv count": _header(0, (1 << 64) - 1),
    "tensor count just over what fits": _header(2, 0) + b"\0" * 40,
    "version 1": _header(0, 0, version=1),
    "version 4": _header(0, 0, version=4),
    "huge key length": _header(0, 1) + struct.pack("<Q", 1 << 63) + b"k" * 20,
    "huge string value": _header(0, 1) + _kv(b"k", V.STRING, struct.pack("<Q", 1 << 40) + b"x"),
    "unknown value type": _file([_kv(b"k", 13, b"\0" * 8)], []),
    "huge array": _file([_kv(b"k", V.ARRAY, struct.pack("<IQ", V.UINT8, 1 << 60))], []),
    "huge string array": _file([_kv(b"k", V.ARRAY, struct.pack("<IQ", V.STRING, 1 << 40))], []),
    "nested array": _file(
        [_kv(b"k", V.ARRAY, struct.pack("<IQ", V.ARRAY, 1) + struct.pack("<IQ", V.UINT8, 0))], []
    ),
    "array of unknown type": _file([_kv(b"k", V.ARRAY, struct.pack("<IQ", 99, 1) + b"\0")], []),
    "duplicate key": _file([ARCH, ARCH], []),
    "key not utf-8": _file([_kv(b"\xff\xfe", V.UINT8, b"\0")], []),
    "alignment zero": _file([_kv(b"general.alignment", V.UINT32, struct.pack("<I", 0))], []),
    "alignment not a power of two": _file(
        [_kv(b"general.alignment", V.UINT32, struct.pack("<I", 48))], []
    ),
    "alignment of the wrong type": _file(
        [_kv(b"general.alignment", V.UINT64, struct.pack("<Q", 32))], []
    ),
    "tensor past the end": _file([ARCH], [_tensor(b"a", [1 << 20], 0, 0)], b"\0" * 32),
    "tensor offset past the end": _file([ARCH], [_tensor(b"a", [8], 0, 1 << 62)], b"\0" * 32),
    "tensor offset + size wraps 64 bits": _file(
        [ARCH], [_tensor(b"a", [8], 0, (1 << 64) - 32)], b"\0" * 32
    ),
    "unaligned tensor": _file([ARCH], [_tensor(b"a", [4], 0, 4)], b"\0" * 64),
    "overlapping tensors": _file([ARCH], [F32_8, _tensor(b"b", [8], 0, 0)], b"\0" * 64),
    "duplicate tensor name": _file([ARCH], [F32_8, _tensor(b"a", [8], 0, 32)], b"\0" * 64),
    "zero dimension": _file([ARCH], [_tensor(b"a", [0], 0, 0)], b"\0" * 32),
    "huge dimension": _file([ARCH], [_tensor(b"a", [1 << 63], 0, 0)], b"\0" * 32),
    "dimensions whose product is huge": _file(
        [ARCH], [_tensor(b"a", [1 << 40, 1 << 40, 1 << 40, 1 << 40], 0, 0)], b"\0" * 32
    ),
    "five dimensions": _file([ARCH], [_tensor(b"a", [1, 1, 1, 1, 1], 0, 0)], b"\0" * 32),
    "unknown tensor type": _file([ARCH], [_tensor(b"a", [8], 4, 0)], b"\0" * 64),
    "row not a multiple of the block": _file(
        [ARCH], [_tensor(b"a", [33], gguf.GGMLQuantizationType.Q8_0, 0)], b"\0" * 64
    ),
    "tensor name too long": _file(
        [ARCH], [_tensor(b"n" * (MAX_TENSOR_NAME_BYTES + 1), [8], 0, 0)], b"\0" * 32
    ),
    "huge block count": _file(
        [_kv(b"llama.block_count", V.UINT32, struct.pack("<I", 1 << 25))], []
    ),
    "negative block count": _file([_kv(b"llama.block_count", V.INT64, struct.pack("<q", -1))], []),
    "huge dimension count": _file([ARCH], [_string(b"a") + struct.pack("<I", 1 << 31)]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_headers_are_refused_quickly_in_bounded_memory(name: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(MalformedFileError, match="malformed GGUF"):
            check_gguf_bytes(HOSTILE[name])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1
    assert peak < MiB


def test_a_well_formed_hand_built_file_passes() -> None:
    data = _file([ARCH], [F32_8, _tensor(b"b", [8], 0, 32)], b"\0" * 64)
    assert check_gguf_bytes(data).tensor_count == 2


def test_a_big_endian_gguf_passes(tmp_path: Path) -> None:
    path = tmp_path / "big.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_block_count(1)
    writer.add_tensor("a", np.zeros(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert check_gguf(path).tensor_count == 1


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    """A GGUF assembled from parts where every count, length, type and offset may lie."""
    big = st.one_of(st.integers(0, 64), st.integers(0, (1 << 64) - 1))
    kvs = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 14))
        payload = draw(st.binary(max_size=24))
        if draw(st.booleans()):
            payload = struct.pack("<Q", draw(big)) + payload
        if kind == V.ARRAY:
            payload = struct.pack("<IQ", draw(st.integers(0, 14)), draw(big)) + payload
        kvs.append(_kv(draw(st.binary(max_size=12)), kind, payload))
    tensors = [
        _tensor(
            draw(st.binary(max_size=8)),
            draw(st.lists(big, max_size=5)),
            draw(st.integers(0, 42)),
            draw(big),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    data = draw(st.binary(max_size=256))
    counts = {}
    if draw(st.booleans()):
        counts = {"tensor_count": draw(big), "kv_count": draw(big)}
    return _file(kvs, tensors, data, **counts)


@given(data=hostile_files())
def test_assembled_hostile_files_give_a_result_or_the_clear_error(data: bytes) -> None:
    layout = _outcome(data)
    if layout is not None:
        assert layout.data_end <= layout.file_size


@pytest.mark.gemma
def test_checking_gemma_is_fast_and_reads_no_tensor_data(gemma_model: Path) -> None:
    started = time.perf_counter()
    layout = check_gguf(gemma_model)
    elapsed = time.perf_counter() - started
    assert layout.tensor_count > 200 and layout.data_end == layout.file_size
    assert elapsed < 1.0  # measured about 0.03 s on an idle machine
