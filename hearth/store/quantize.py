"""Quantize a GGUF with llama.cpp's own quantizer (``llama_model_quantize``), in-process.

llama.cpp's quantizer has no progress callback, but it logs one line per tensor
(``[  12/ 236] blk.1.attn_q.weight - [  640,  1024], type = f32, ...``) through the log
callback: :func:`quantize_gguf` installs a callback for the duration of the call that turns
those lines into ``progress(done, total)`` (tensors, not bytes) and keeps the last lines, so a
failure (llama.cpp returns only a status code) can say why. When it returns, a silent callback
is installed, as the engine's runner does.

An importance matrix (``--imatrix``) is read from llama.cpp's GGUF imatrix format (the
``llama-imatrix`` tool's default output since 2025: tensors ``<name>.in_sum2`` and
``<name>.counts``) and handed to llama.cpp as ``params.imatrix``, a NULL-terminated array of
``llama_model_imatrix_data``, normalised as ``llama-quantize`` does (sums / counts).
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hearth.errors import QuantizationError, ValidationError
from hearth.log import get_logger
from hearth.store.names import DEFAULT_TAG, ModelName

log = get_logger(__name__)

TensorProgress = Callable[[int, int | None], None]

_FTYPE_PREFIXES = ("MOSTLY_", "ALL_")
_NOT_TARGETS = {"GUESSED"}
_TENSOR_LINE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]")
_LOG_LINES_KEPT = 20
_IMATRIX_SUMS = ".in_sum2"
_IMATRIX_COUNTS = ".counts"

# Quantizations whose tensors are all stored at full or half precision: a source in one of these
# is "unquantized", anything else needs allow_requantize (and loses quality twice).
UNQUANTIZED = frozenset({"F32", "F16", "BF16"})


def quant_types() -> dict[str, int]:
    """Target names llama.cpp accepts (``Q4_K_M``, ``Q8_0``, ``F16``, ...) → llama_ftype values."""
    names = {}
    for member in gguf.LlamaFileType:
        name = member.name
        for prefix in _FTYPE_PREFIXES:
            name = name.removeprefix(prefix)
        if name not in _NOT_TARGETS:
            names[name] = int(member.value)
    return names


def parse_quant_type(name: str) -> tuple[str, int]:
    """``"q4_k_m"`` → ``("Q4_K_M", 15)``; an unknown name lists the valid ones."""
    types = quant_types()
    canonical = name.strip().upper()
    if canonical not in types:
        raise ValidationError("to", name, f"must be one of {', '.join(types)}")
    return canonical, types[canonical]


@dataclass(frozen=True)
class QuantizeOptions:
    ftype: int
    threads: int
    allow_requantize: bool = False
    imatrix: Path | None = None


def quantize_gguf(
    source: Path,
    target: Path,
    options: QuantizeOptions,
    progress: TensorProgress | None = None,
) -> None:
    """Write ``source`` quantized to ``target``; QuantizationError with llama.cpp's reason."""
    import llama_cpp  # only here: the store stays importable without loading llama.cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = options.ftype
    params.nthread = options.threads
    params.allow_requantize = options.allow_requantize
    keep_alive = None
    if options.imatrix is not None:
        keep_alive = _imatrix_array(read_imatrix(options.imatrix))
        params.imatrix = ctypes.cast(
            keep_alive[0], ctypes.POINTER(llama_cpp.llama_model_imatrix_data)
        )
    with _capture_log(progress) as lines:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    del keep_alive  # llama.cpp copied the importance matrix; it may be freed now
    if status != 0:
        target.unlink(missing_ok=True)  # whatever llama.cpp wrote before it gave up
        raise QuantizationError(f"llama.cpp could not quantize {source.name}: {_reason(lines)}")
    if lines.failure is not None:  # the progress callback raised (say, Ctrl-C in a UI)
        target.unlink(missing_ok=True)
        raise lines.failure
    _fsync(target)  # the store adopts it by renaming: it must be on disk first


def default_target_name(source: ModelName, quant: str) -> str:
    """Where a quantized copy goes unless named: the tag gains the quantization, lowercased.

    ``gemma3:270m`` → ``gemma3:270m-q8_0``; ``acme/bot:latest`` → ``acme/bot:q8_0``.
    """
    suffix = quant.lower()
    tag = suffix if source.tag == DEFAULT_TAG else f"{source.tag}-{suffix}"
    return str(replace(source, tag=tag))


def is_requantize(source_quantization: str) -> bool:
    """Whether quantizing a model stored as ``source_quantization`` quantizes it a second time."""
    return source_quantization.upper() not in UNQUANTIZED


def read_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Per-tensor importance vectors from a GGUF imatrix file (``llama-imatrix`` output)."""
    try:
        reader = gguf.GGUFReader(path)
    except Exception as error:  # not a GGUF or corrupt: one readable line either way
        raise QuantizationError(
            f"{path}: not an importance matrix in GGUF format ({error}); "
            "create one with llama.cpp's llama-imatrix"
        ) from None
    tensors = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors}
    entries = {}
    for name, sums in tensors.items():
        if name.endswith(_IMATRIX_SUMS):
            base = name.removesuffix(_IMATRIX_SUMS)
            counts = tensors.get(base + _IMATRIX_COUNTS)
            if counts is None:
                raise QuantizationError(f"{path}: {base} has sums but no counts")
            entries[base] = _normalise(sums, counts)
    if not entries:
        raise QuantizationError(f"{path} holds no importance matrix entries (*.in_sum2)")
    return entries


def _normalise(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean squared activation per column, as llama-quantize computes it (1 where unseen)."""
    per_expert = sums.reshape(len(counts), -1)
    safe = np.where(counts > 0, counts, 1.0)[:, None]
    values = np.where(counts[:, None] > 0, per_expert / safe, 1.0)
    return np.ascontiguousarray(values.reshape(-1), dtype=np.float32)


def _imatrix_array(entries: dict[str, np.ndarray]) -> tuple[Any, object]:
    """A NULL-terminated ``llama_model_imatrix_data[]`` and what must outlive it."""
    import llama_cpp

    array = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
    names = []
    for slot, (name, values) in zip(array, entries.items(), strict=False):
        names.append(name.encode())
        slot.name = names[-1]
        slot.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        slot.size = values.size
    array[len(entries)].name = None  # the terminator
    return array, (names, entries)


_log_lock = threading.Lock()  # one quantization at a time owns llama.cpp's (global) log callback
_silent_callback: object = None


class _LogTail(deque[str]):
    """The last lines llama.cpp logged, and an exception the progress callback raised."""

    failure: BaseException | None = None


@contextmanager
def _capture_log(progress: TensorProgress | None) -> Iterator[_LogTail]:
    """Route llama.cpp's log to progress updates and a short tail, then silence it again."""
    import llama_cpp

    lines = _LogTail(maxlen=_LOG_LINES_KEPT)

    def on_log(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
        line = (text or b"").decode("utf-8", errors="replace")
        if line.strip():
            lines.append(line.strip())
        match = _TENSOR_LINE.match(line.lstrip())
        if match is None or progress is None or lines.failure is not None:
            return
        try:  # an exception must not escape into C: keep it and raise it after the call
            progress(int(match.group(1)), int(match.group(2)))
        except BaseException as error:
            lines.failure = error

    callback = llama_cpp.llama_log_callback(on_log)
    with _log_lock:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield lines
        finally:
            silence_llama_log()


def _reason(lines: _LogTail) -> str:
    for line in reversed(lines):
        if "failed" in line or "error" in line.lower() or "requires" in line:
            return line
    return lines[-1] if lines else "no reason given (llama.cpp logged nothing)"


def _fsync(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def silence_llama_log() -> None:
    """Drop llama.cpp's log lines from now on (the engine's runner does the same)."""
    import llama_cpp

    global _silent_callback
    if _silent_callback is None:
        _silent_callback = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_silent_callback, ctypes.c_void_p(0))
