"""Hostile safetensors headers: a checked header or the clear error, never anything else; and
every file the safetensors library itself reads whole, the check accepts."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from hearth.errors import MalformedFileError
from hearth.store.safetensors_check import (
    DTYPE_BITS,
    MAX_HEADER_BYTES,
    SafetensorsHeader,
    check_safetensors,
    read_safetensors_header,
)

TENSORS = {
    "embed": np.arange(24, dtype=np.float32).reshape(4, 6),
    "norm": np.ones(6, dtype=np.float16),
    "ids": np.arange(3, dtype=np.int64),
}


@pytest.fixture(scope="module")
def valid() -> bytes:
    return save(TENSORS, metadata={"format": "np"})


def _outcome(data: bytes) -> SafetensorsHeader | None:
    try:
        return read_safetensors_header(io.BytesIO(data), len(data), "fuzz")
    except MalformedFileError as error:
        assert "malformed safetensors" in str(error)
        return None


def _library_reads(data: bytes, tmp_path: Path) -> bool:
    path = tmp_path / "lib.safetensors"
    path.write_bytes(data)
    try:
        with safe_open(str(path), framework="np") as handle:
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                handle.get_tensor(name)
    except (SafetensorError, ValueError, TypeError):
        return False
    return True


def test_a_saved_file_passes_with_its_tensors(valid: bytes, tmp_path: Path) -> None:
    path = tmp_path / "ok.safetensors"
    path.write_bytes(valid)
    header = check_safetensors(path)
    assert set(header.tensors) == set(TENSORS) and header.metadata == {"format": "np"}
    assert max(span.end for span in header.tensors.values()) == len(valid)


def test_every_truncation_is_the_clear_error(valid: bytes) -> None:
    for length in range(len(valid)):
        assert _outcome(valid[:length]) is None, f"truncated at {length} bytes passed"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_files_give_a_result_or_the_clear_error(
    valid: bytes, tmp_path: Path, mutations: list[tuple[int, int]]
) -> None:
    data = bytearray(valid)
    for position, value in mutations:
        data[position % len(data)] = value
    outcome = _outcome(bytes(data))
    if outcome is None:  # never stricter than the library on what it reads whole
        assert not _library_reads(bytes(data), tmp_path)


# Wrong-typed JSON values (cheap to generate: deep recursion makes hypothesis slow).
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@st.composite
def hostile_headers(draw: st.DrawFn) -> bytes:
    entries: dict[str, Any] = {}
    for index in range(draw(st.integers(0, 4))):
        entry = {
            "dtype": draw(st.sampled_from(sorted(DTYPE_BITS)) | WRONG),
            "shape": draw(st.lists(st.integers(-2, 1 << 62), max_size=9) | WRONG),
            "data_offsets": draw(
                st.lists(st.integers(-1, 1 << 64), min_size=2, max_size=3) | WRONG
            ),
        }
        entries[draw(st.sampled_from(["t", "__metadata__", f"t{index}"]))] = entry
    if draw(st.booleans()):
        entries["__metadata__"] = draw(
            WRONG | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)
        )
    raw = json.dumps(entries).encode()
    declared = draw(st.sampled_from([len(raw), len(raw) + 1, 1 << 63, MAX_HEADER_BYTES + 1]))
    return struct.pack("<Q", declared) + raw + draw(st.binary(max_size=64))


@given(data=hostile_headers())
def test_assembled_hostile_headers_give_a_result_or_the_clear_error(data: bytes) -> None:
    header = _outcome(data)
    if header is not None:
        for span in header.tensors.values():
            assert header.data_start <= span.begin <= span.end <= len(data)


@given(raw=st.binary(max_size=64))
def test_arbitrary_bytes_give_a_result_or_the_clear_error(raw: bytes) -> None:
    _outcome(raw)
