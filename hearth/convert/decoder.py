"""What every decoder-only LM (Llama, Qwen, Gemma, Phi-3) shares on its way to GGUF.

:class:`DecoderConversion` reads the common hyperparameters from ``config.json``, maps tensor
names through gguf-py's name map for the GGUF architecture, drops ``lm_head`` when the config
ties it to the embedding (llama.cpp then reuses ``token_embd``), and writes the vocabulary
(:mod:`hearth.convert.tokenizer`). An architecture module subclasses it to add its own keys
(:meth:`add_arch_metadata`), to change a tensor's data (:meth:`transform`) or to add tensors
that the folder does not hold (:meth:`extra_tensors`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gguf
import numpy as np

from hearth.convert.hf_folder import HFFolder, SourceTensor
from hearth.convert.tokenizer import Vocab, add_vocab, read_vocab
from hearth.errors import ConversionError

Array = np.ndarray[Any, Any]
EMBEDDING = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
_SKIPPED_SUFFIXES = (".rotary_emb.inv_freq",)  # buffers some older checkpoints saved


@dataclass(frozen=True)
class Rope:
    theta: float
    kind: str  # rope_type: "default", "linear", "yarn", "llama3", "longrope", ...
    params: Mapping[str, Any]  # the scaling parameters (factor, original context, ...)
    local_theta: float | None  # sliding-window layers' base frequency (Gemma 3)


@dataclass(frozen=True)
class DecoderParams:
    context_length: int
    embedding_length: int
    feed_forward_length: int
    block_count: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rms_norm_eps: float
    tied_embeddings: bool
    rope: Rope


class DecoderConversion:
    """The shared part; subclasses set ``arch`` and add what their architecture needs."""

    arch: ClassVar[gguf.MODEL_ARCH]
    gguf_arch: str
    # rope_type values this architecture converts; anything else is refused, not ignored.
    rope_kinds: ClassVar[frozenset[str]] = frozenset({"default", "linear", "yarn"})

    def __init__(self, folder: HFFolder) -> None:
        self.folder = folder
        self.config = folder.config
        self.gguf_arch = gguf.MODEL_ARCH_NAMES[self.arch]
        self.params = decoder_params(self.config)
        if self.params.rope.kind not in self.rope_kinds:
            raise ConversionError(
                f"config.json: RoPE scaling {self.params.rope.kind!r} is not supported for "
                f"{folder.architecture} (supported: {', '.join(sorted(self.rope_kinds))})"
            )
        self._names = gguf.get_tensor_name_map(self.arch, self.params.block_count)
        self.vocab: Vocab = read_vocab(folder.root, self._embedding_rows())
        self.validate()

    # Hooks for architectures -----------------------------------------------------------------

    def validate(self) -> None:
        """Refuse settings llama.cpp would run differently from transformers."""

    def add_arch_metadata(self, writer: gguf.GGUFWriter) -> None:
        """Keys only this architecture has."""

    def transform(self, gguf_name: str, data: Array) -> Array:
        """A tensor's data as llama.cpp expects it (default: unchanged)."""
        return data

    def extra_tensors(self) -> list[tuple[str, Array]]:
        """Tensors computed from the config (RoPE factors), written after the folder's."""
        return []

    # The Conversion protocol (hearth/convert/hf_to_gguf.py) ----------------------------------

    def add_metadata(self, writer: gguf.GGUFWriter) -> None:
        params = self.params
        writer.add_context_length(params.context_length)
        writer.add_embedding_length(params.embedding_length)
        writer.add_feed_forward_length(params.feed_forward_length)
        writer.add_block_count(params.block_count)
        writer.add_head_count(params.head_count)
        writer.add_head_count_kv(params.head_count_kv)
        writer.add_key_length(params.head_dim)
        writer.add_value_length(params.head_dim)
        writer.add_layer_norm_rms_eps(params.rms_norm_eps)
        writer.add_vocab_size(len(self.vocab.tokens))
        self.add_rope(writer)
        self.add_arch_metadata(writer)
        add_vocab(writer, self.vocab)

    def add_rope(self, writer: gguf.GGUFWriter) -> None:
        rope = self.params.rope
        writer.add_rope_freq_base(rope.theta)
        writer.add_rope_dimension_count(self.params.head_dim)
        if rope.local_theta is not None:
            writer.add_rope_freq_base_swa(rope.local_theta)
        if rope.kind == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(rope.params["factor"]))
        elif rope.kind == "yarn":
            writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            writer.add_rope_scaling_factor(float(rope.params["factor"]))
            original = rope.params.get("original_max_position_embeddings")
            if original is not None:
                writer.add_rope_scaling_orig_ctx_len(int(original))

    def tensor_name(self, tensor: SourceTensor) -> str | None:
        if tensor.name.endswith(_SKIPPED_SUFFIXES):
            return None
        if tensor.name == LM_HEAD and self.params.tied_embeddings:
            return None  # a copy of the embedding; llama.cpp reuses token_embd
        mapped = self._names.get_name(tensor.name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ConversionError(
                f"tensor {tensor.name} has no place in llama.cpp's {self.gguf_arch} architecture"
            )
        return str(mapped)

    def keep_f32(self, gguf_name: str, shape: tuple[int, ...]) -> bool:
        """Norms, biases and RoPE factors (1-D) stay F32 whatever the output type."""
        return len(shape) < 2

    # Helpers ---------------------------------------------------------------------------------

    def _embedding_rows(self) -> int:
        for tensor in self.folder.tensors:
            if tensor.name == EMBEDDING:
                return tensor.shape[0]
        raise ConversionError(f"{self.folder.root} has no {EMBEDDING}")

    def swa_layers(self) -> list[bool] | None:
        """Which layers use sliding-window attention (``layer_types``), or None if not given."""
        layer_types = self.config.get("layer_types")
        if not isinstance(layer_types, list) or len(layer_types) != self.params.block_count:
            return None
        return [kind == "sliding_attention" for kind in layer_types]


def decoder_params(config: Mapping[str, Any]) -> DecoderParams:
    heads = positive_int(config, "num_attention_heads")
    hidden = positive_int(config, "hidden_size")
    head_dim = config.get("head_dim") or hidden // heads
    return DecoderParams(
        context_length=positive_int(config, "max_position_embeddings"),
        embedding_length=hidden,
        feed_forward_length=positive_int(config, "intermediate_size"),
        block_count=positive_int(config, "num_hidden_layers"),
        head_count=heads,
        head_count_kv=int(config.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        rope=rope_settings(config),
    )


def rope_settings(config: Mapping[str, Any]) -> Rope:
    """RoPE from either spelling: ``rope_parameters`` (transformers 5) or ``rope_theta`` and
    ``rope_scaling`` (older configs); per-layer-type parameters (Gemma 3) are split in two."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ConversionError("config.json: rope_parameters must be an object")
    full = params.get("full_attention", params)
    local = params.get("sliding_attention", {})
    theta = full.get("rope_theta", config.get("rope_theta", 10000.0))
    local_theta = local.get("rope_theta", config.get("rope_local_base_freq"))
    kind = full.get("rope_type", full.get("type")) or "default"
    return Rope(
        theta=float(theta),
        kind=str(kind),
        params=full,
        local_theta=float(local_theta) if local_theta is not None else None,
    )


def llama3_rope_factors(rope: Rope, head_dim: int) -> Array:
    """Llama 3.1's frequency-dependent RoPE scaling, as the per-dimension factors llama.cpp
    divides its frequencies by (``rope_freqs.weight``)."""
    factor = float(rope.params.get("factor", 8.0))
    low = float(rope.params.get("low_freq_factor", 1.0))
    high = float(rope.params.get("high_freq_factor", 4.0))
    original = float(rope.params.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (rope.theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    factors = []
    for freq in freqs:
        wavelength = 2 * math.pi / freq
        if wavelength < original / high:
            factors.append(1.0)
        elif wavelength > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def positive_int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConversionError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConversionError(f"config.json: {message}")
