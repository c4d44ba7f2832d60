"""Hugging Face model folder (safetensors) → one GGUF file, written with gguf-py's GGUFWriter.

The folder is read with :mod:`hearth.convert.hf_folder` (never a pickle file); the class its
``config.json`` names picks the architecture module (:data:`SUPPORTED_ARCHITECTURES`: BERT,
Llama/Mistral, Qwen 2/3, Gemma 2/3, Phi-3). The GGUF is written to
a temporary file beside the destination, one tensor at a time (so only one tensor's data is in
memory), fsynced, then renamed: a conversion that fails or is interrupted leaves no file.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import gguf
import numpy as np

from hearth.convert import gemma, llama, phi3, qwen
from hearth.convert.bert import ARCHITECTURES as BERT_ARCHITECTURES
from hearth.convert.bert import BertConversion
from hearth.convert.hf_folder import (
    READABLE_DTYPES,
    HFFolder,
    SourceTensor,
    card_license,
    read_folder,
    read_tensor,
)
from hearth.errors import ConversionError

Progress = Callable[[int, int | None], None]
"""Called after each tensor with (bytes of tensor data written, total bytes)."""

TEMP_PREFIX = ".tmp-"


class OutType(Enum):
    """The type of the weight matrices; norms, biases and added embeddings are always F32."""

    F16 = "f16"
    F32 = "f32"


_FILE_TYPES = {OutType.F16: gguf.LlamaFileType.MOSTLY_F16, OutType.F32: gguf.LlamaFileType.ALL_F32}
_NUMPY_TYPES: dict[OutType, np.dtype[Any]] = {
    OutType.F16: np.dtype(np.float16),
    OutType.F32: np.dtype(np.float32),
}
_F32: np.dtype[Any] = np.dtype(np.float32)


class Conversion(Protocol):
    """One architecture's part of a conversion (see hearth/convert/bert.py)."""

    gguf_arch: str

    def add_metadata(self, writer: gguf.GGUFWriter) -> None: ...

    def tensor_name(self, tensor: SourceTensor) -> str | None: ...

    def keep_f32(self, gguf_name: str, shape: tuple[int, ...]) -> bool: ...

    def transform(self, gguf_name: str, data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]: ...

    def extra_tensors(self) -> list[tuple[str, np.ndarray[Any, Any]]]: ...


_CONVERSIONS: dict[str, Callable[[HFFolder], Conversion]] = {
    **dict.fromkeys(BERT_ARCHITECTURES, BertConversion),
    **dict.fromkeys(llama.ARCHITECTURES, llama.LlamaConversion),
    **dict.fromkeys(qwen.QWEN2_ARCHITECTURES, qwen.Qwen2Conversion),
    **dict.fromkeys(qwen.QWEN3_ARCHITECTURES, qwen.Qwen3Conversion),
    **dict.fromkeys(gemma.GEMMA2_ARCHITECTURES, gemma.Gemma2Conversion),
    **dict.fromkeys(gemma.GEMMA3_ARCHITECTURES, gemma.Gemma3Conversion),
    **dict.fromkeys(phi3.ARCHITECTURES, phi3.Phi3Conversion),
}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_CONVERSIONS)


@dataclass(frozen=True)
class ConversionResult:
    path: Path
    architecture: str  # the GGUF architecture, e.g. "bert"
    name: str
    license: str | None
    tensor_count: int
    parameter_count: int


@dataclass(frozen=True)
class _PlannedTensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    load: Callable[[], np.ndarray[Any, Any]]  # the data as llama.cpp expects it, any float type

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def convert_hf_to_gguf(
    src: Path,
    dst: Path,
    *,
    outtype: OutType = OutType.F16,
    name: str | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Convert the model folder ``src`` into the GGUF file ``dst`` (replaced if it exists).

    ``name`` becomes ``general.name`` (default: the folder's name); ``general.license`` comes
    from the model card's front matter. Raises ConversionError, naming what is wrong, for an
    unsupported architecture, pickle-only weights, or a malformed folder.
    """
    folder = read_folder(src)
    conversion = _conversion_for(folder)
    tensors = _plan_tensors(folder, conversion, outtype)
    model_name = name or src.resolve().name
    license_id = card_license(src)

    def add_general(writer: gguf.GGUFWriter) -> None:
        writer.add_name(model_name)
        if license_id:
            writer.add_license(license_id)
        writer.add_file_type(_FILE_TYPES[outtype].value)
        conversion.add_metadata(writer)

    _write_atomically(dst, conversion.gguf_arch, add_general, tensors, progress)
    return ConversionResult(
        path=dst,
        architecture=conversion.gguf_arch,
        name=model_name,
        license=license_id,
        tensor_count=len(tensors),
        parameter_count=sum(int(np.prod(t.shape)) for t in tensors),
    )


def _conversion_for(folder: HFFolder) -> Conversion:
    make = _CONVERSIONS.get(folder.architecture)
    if make is None:
        raise ConversionError(
            f"{folder.root}: architecture {folder.architecture} is not supported by Hearth's "
            f"converter (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    return make(folder)


def _plan_tensors(
    folder: HFFolder, conversion: Conversion, outtype: OutType
) -> list[_PlannedTensor]:
    planned = []
    for source in folder.tensors:
        name = conversion.tensor_name(source)
        if name is None:
            continue
        if source.dtype not in READABLE_DTYPES:
            raise ConversionError(
                f"tensor {source.name} is {source.dtype}; Hearth converts F32, F16, BF16 and "
                "F64 safetensors weights"
            )
        dtype = _output_type(conversion, name, source.shape, outtype)
        planned.append(_PlannedTensor(name, source.shape, dtype, _loader(conversion, name, source)))
    if not planned:
        raise ConversionError(f"{folder.root} holds no tensors to convert")
    for name, data in conversion.extra_tensors():
        dtype = _output_type(conversion, name, data.shape, outtype)
        planned.append(_PlannedTensor(name, data.shape, dtype, functools.partial(_same, data)))
    return planned


def _output_type(
    conversion: Conversion, name: str, shape: tuple[int, ...], outtype: OutType
) -> np.dtype[Any]:
    return _F32 if conversion.keep_f32(name, shape) else _NUMPY_TYPES[outtype]


def _same(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return data


def _loader(
    conversion: Conversion, name: str, source: SourceTensor
) -> Callable[[], np.ndarray[Any, Any]]:
    return lambda: conversion.transform(name, read_tensor(source))


def _write_atomically(
    dst: Path,
    arch: str,
    add_metadata: Callable[[gguf.GGUFWriter], None],
    tensors: Sequence[_PlannedTensor],
    progress: Progress | None,
) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".gguf", dir=dst.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        os.chmod(temp, 0o644)  # mkstemp makes 0600; a model file is readable like any other
        _write(temp, arch, add_metadata, tensors, progress)
        _fsync(temp)
        os.replace(temp, dst)
        _fsync(dst.parent)  # make the rename durable
    except BaseException:
        # Also on KeyboardInterrupt: no half-written GGUF is ever left behind.
        temp.unlink(missing_ok=True)
        raise


def _write(
    path: Path,
    arch: str,
    add_metadata: Callable[[gguf.GGUFWriter], None],
    tensors: Sequence[_PlannedTensor],
    progress: Progress | None,
) -> None:
    writer = gguf.GGUFWriter(path, arch)
    try:
        add_metadata(writer)
        for tensor in tensors:  # the index first; the data follows in the same order
            writer.add_tensor_info(tensor.name, tensor.shape, tensor.dtype, tensor.nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = sum(tensor.nbytes for tensor in tensors)
        done = 0
        for tensor in tensors:
            data = tensor.load().astype(tensor.dtype, copy=False)
            if data.shape != tensor.shape:  # a transform must keep the header's promise
                raise ConversionError(f"tensor {tensor.name} changed shape during conversion")
            writer.write_tensor_data(data)
            done += tensor.nbytes
            if progress is not None:
                progress(done, total)
    finally:
        writer.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
