"""The memory planner: will a model fit, at which quantization, with how much context?

Everything comes from a GGUF header (metadata and tensor index, no weights), read from a local
file, a store model, or a remote URL with HTTP Range requests, so a plan can be made before a
download. For each quantization the planner estimates:

- weights: the header plus every tensor at the type llama.cpp's quantizer would give it
  (:func:`tensor_type`: the main rules of ``llama_tensor_get_type``, see docs/PLANNING.md);
  for the model's own quantization the file size itself, when known.
- KV cache, compute buffers and overhead: :mod:`hearth.engine.memory` (the figures the model
  manager budgets with), for ``parallel`` sequences of ``context`` tokens each, the KV cache
  scaled to the cache type (f16, q8_0, q4_0).

It recommends the largest quantization that fits the memory (given, or what this machine has
available) and the largest context that fits with the model as it is.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import gguf
import httpx

from hearth.engine.llm import EngineConfig
from hearth.engine.memory import MemoryEstimate, estimate_for_shape
from hearth.errors import InvalidModelFileError, SourceUnavailableError, ValidationError
from hearth.store.gguf_shape import GGUFHeader, TensorEntry, parse_gguf_header

T = gguf.GGMLQuantizationType
KV_CELL_PAD = 256
# Candidate quantizations, largest first: what ``hearth plan`` compares and recommends from.
CANDIDATES = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")
BASE_TYPES: Mapping[str, T] = {
    "F32": T.F32,
    "F16": T.F16,
    "BF16": T.BF16,
    "Q8_0": T.Q8_0,
    "Q6_K": T.Q6_K,
    "Q5_K_M": T.Q5_K,
    "Q5_K_S": T.Q5_K,
    "Q5_0": T.Q5_0,
    "Q5_1": T.Q5_1,
    "Q4_K_M": T.Q4_K,
    "Q4_K_S": T.Q4_K,
    "Q4_0": T.Q4_0,
    "Q4_1": T.Q4_1,
    "Q3_K_M": T.Q3_K,
    "Q3_K_S": T.Q3_K,
    "Q3_K_L": T.Q3_K,
    "Q2_K": T.Q2_K,
}
# llama.cpp's tensor_type_fallback: a row length the block size does not divide.
FALLBACK: Mapping[T, T] = {
    T.Q2_K: T.Q4_0,
    T.Q3_K: T.Q4_0,
    T.Q4_K: T.Q5_0,
    T.Q5_K: T.Q5_1,
    T.Q6_K: T.Q8_0,
}
KV_TYPES: Mapping[str, T] = {"f16": T.F16, "f32": T.F32, "q8_0": T.Q8_0, "q4_0": T.Q4_0}
_REMOTE_FIRST_READ = 1 << 20
_REMOTE_MAX_READ = 256 << 20


def type_bytes(kind: T, n_elements: int) -> int:
    block, size = gguf.GGML_QUANT_SIZES[kind]
    return -(-n_elements // block) * size


def bits_per_weight(kind: T) -> float:
    block, size = gguf.GGML_QUANT_SIZES[kind]
    return size * 8 / block


def _use_more_bits(layer: int, n_layers: int) -> bool:
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit() else None


def tensor_type(tensor: TensorEntry, quant: str, *, n_layers: int, tied: bool) -> T:
    """The type llama.cpp's quantizer gives ``tensor`` for ``quant`` (its main rules only)."""
    base = BASE_TYPES[quant]
    if len(tensor.dims) < 2:
        return T.F32  # norms and biases stay as they are (F32 in every converter's output)
    if base in (T.F32, T.F16, T.BF16):
        return base
    kind = base
    is_output = tensor.name == "output.weight" or (tied and tensor.name == "token_embd.weight")
    if is_output:
        if tensor.dims[0] % gguf.GGML_QUANT_SIZES[base][0] != 0:
            return T.Q8_0
        kind = base if base == T.Q8_0 else T.Q6_K
    elif quant in ("Q4_K_M", "Q5_K_M") and (
        ".attn_v." in tensor.name or ".ffn_down." in tensor.name
    ):
        layer = _layer(tensor.name)
        if layer is not None and _use_more_bits(layer, n_layers):
            kind = T.Q6_K
    return _fallback(kind, tensor.dims[0])


def _fallback(kind: T, row: int) -> T:
    if row % gguf.GGML_QUANT_SIZES[kind][0] == 0:
        return kind
    kind = FALLBACK.get(kind, kind)
    return kind if row % gguf.GGML_QUANT_SIZES[kind][0] == 0 else T.F16


def weights_bytes(header: GGUFHeader, quant: str) -> int:
    """Estimated file size of the model quantized to ``quant``: header + tensor data."""
    tied = not any(t.name == "output.weight" for t in header.tensors)
    n_layers = header.shape.n_layers
    data = sum(
        type_bytes(tensor_type(t, quant, n_layers=n_layers, tied=tied), t.n_elements)
        for t in header.tensors
    )
    return header.size + data


def parameter_count(header: GGUFHeader) -> int:
    return sum(t.n_elements for t in header.tensors)


def file_quantization(header: GGUFHeader) -> str | None:
    """``Q4_K_M`` and so on, from general.file_type."""
    if header.file_type is None:
        return None
    try:
        name = gguf.LlamaFileType(header.file_type).name
    except ValueError:
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


# Reading headers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelHeader:
    """A model's header and, when known, its file size."""

    header: GGUFHeader
    file_size: int | None
    origin: str


def read_local_header(path: Path) -> ModelHeader:
    try:
        with path.open("rb") as file:
            data = file.read(_REMOTE_FIRST_READ)
            while True:
                try:
                    header = parse_gguf_header(data)
                    break
                except (struct.error, ValueError) as error:
                    more = file.read(len(data) * 3)
                    if not more:
                        raise InvalidModelFileError(
                            f"{path}: not a readable GGUF ({error})"
                        ) from None
                    data += more
    except OSError as error:
        raise InvalidModelFileError(f"{path}: cannot read ({error})") from None
    return ModelHeader(header, path.stat().st_size, str(path))


def read_remote_gguf_shape(
    url: str, headers: Mapping[str, str] | None = None, *, client: httpx.Client | None = None
) -> ModelHeader:
    """The header of the GGUF at ``url``, fetched with growing Range requests (1 MiB, 4 MiB,
    ...) until it parses; the file size comes from ``Content-Range``. No weights are read."""
    own = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=30)
    try:
        size = _REMOTE_FIRST_READ
        while True:
            data, total = _fetch_prefix(http, url, headers or {}, size)
            try:
                return ModelHeader(parse_gguf_header(data), total, url)
            except (struct.error, ValueError) as error:
                if data[:4] != b"GGUF":
                    raise InvalidModelFileError(f"{url} is not a GGUF file") from None
                if len(data) < size or size >= _REMOTE_MAX_READ:
                    raise InvalidModelFileError(f"{url}: header unreadable ({error})") from None
                size *= 4
    except httpx.HTTPError as error:
        raise SourceUnavailableError(f"cannot read {url}: {error}") from None
    finally:
        if own:
            http.close()


def _fetch_prefix(
    http: httpx.Client, url: str, headers: Mapping[str, str], size: int
) -> tuple[bytes, int | None]:
    wanted = {**headers, "Range": f"bytes=0-{size - 1}"}
    with http.stream("GET", url, headers=wanted) as response:
        if response.status_code not in (200, 206):
            raise SourceUnavailableError(f"{url} answered HTTP {response.status_code}")
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= size:
                break  # a server that ignores Range sends everything: stop early
        return bytes(data[:size]), _total_size(response)


def _total_size(response: httpx.Response) -> int | None:
    content_range = response.headers.get("content-range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("content-length")
    return int(length) if response.status_code == 200 and length and length.isdigit() else None


# Planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRequest:
    context: int  # tokens per sequence
    parallel: int  # sequences decoded together
    memory: int  # bytes the model may use
    batch: int = 512
    kv_type: str = "f16"

    def engine_config(self, context: int | None = None) -> EngineConfig:
        return EngineConfig(
            context=context or self.context, max_seqs=self.parallel, batch=self.batch
        )


@dataclass(frozen=True)
class QuantPlan:
    quant: str
    estimate: MemoryEstimate
    current: bool  # the model's own quantization (weights are the file size)

    def fits(self, memory: int) -> bool:
        return self.estimate.total <= memory


@dataclass(frozen=True)
class Plan:
    model: ModelHeader
    request: PlanRequest
    quantization: str | None
    parameters: int
    rows: tuple[QuantPlan, ...]
    recommended: str | None  # largest candidate quantization that fits
    max_context: int  # largest per-sequence context that fits as the model is (0: none)


def estimate(
    header: ModelHeader, weights: int, request: PlanRequest, context: int | None = None
) -> MemoryEstimate:
    shape = header.header.shape
    config = request.engine_config(context)
    result = estimate_for_shape(shape, weights, config)
    kv_kind = _kv_type(request.kv_type)
    kv = (
        result.kv_cache
        * gguf.GGML_QUANT_SIZES[kv_kind][1]
        // (gguf.GGML_QUANT_SIZES[kv_kind][0] * 2)
    )
    return replace(result, kv_cache=kv)


def _kv_type(name: str) -> T:
    kind = KV_TYPES.get(name.lower())
    if kind is None:
        raise ValidationError("kv_type", name, f"must be one of {', '.join(KV_TYPES)}")
    return kind


def make_plan(model: ModelHeader, request: PlanRequest) -> Plan:
    _kv_type(request.kv_type)
    if request.context < 16 or request.parallel < 1:
        raise ValidationError("context", request.context, "must be at least 16, with parallel ≥ 1")
    own = file_quantization(model.header)
    quants = list(CANDIDATES) + (
        [own] if own and own not in CANDIDATES and own in BASE_TYPES else []
    )
    rows = []
    for quant in quants:
        current = quant == own and model.file_size is not None
        weights = (
            model.file_size if current and model.file_size else weights_bytes(model.header, quant)
        )
        rows.append(QuantPlan(quant, estimate(model, weights, request), current))
    rows.sort(key=lambda row: -row.estimate.weights)
    fitting = [row.quant for row in rows if row.fits(request.memory) and row.quant in CANDIDATES]
    own_weights = model.file_size or weights_bytes(model.header, own or "F16")
    return Plan(
        model=model,
        request=request,
        quantization=own,
        parameters=parameter_count(model.header),
        rows=tuple(rows),
        recommended=fitting[0] if fitting else None,
        max_context=max_context(model, own_weights, request),
    )


def max_context(model: ModelHeader, weights: int, request: PlanRequest) -> int:
    """Largest per-sequence context (a multiple of 256, at most the training context) that fits."""
    limit = model.header.shape.context_length or 131072
    low, high = 0, limit // KV_CELL_PAD
    while low < high:  # binary search over multiples of 256
        middle = (low + high + 1) // 2
        if estimate(model, weights, request, middle * KV_CELL_PAD).total <= request.memory:
            low = middle
        else:
            high = middle - 1
    return low * KV_CELL_PAD


# This machine's memory ------------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per field (``MemTotal``, ``MemAvailable``, ...)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            values[key.strip()] = int(parts[0]) * scale
    return values


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Bytes this machine can give a new model now (MemAvailable), or 0 if unknown."""
    try:
        values = parse_meminfo(meminfo.read_text())
    except OSError:
        return 0
    return values.get("MemAvailable", values.get("MemFree", 0))
