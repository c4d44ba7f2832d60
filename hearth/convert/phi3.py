"""Phi-3 and Phi-3.5 (``Phi3ForCausalLM``) → llama.cpp's ``phi3``.

Phi-3 keeps its fused projections: ``qkv_proj`` becomes ``attn_qkv`` and ``gate_up_proj``
becomes ``ffn_up`` (twice the feed-forward length; llama.cpp splits it into gate and up).
Only ``partial_rotary_factor`` of each head is rotated. LongRoPE scaling (the 128k models)
becomes the ``rope_factors_long``/``rope_factors_short`` tensors and an attention factor, as
llama.cpp's own converter writes them.
"""

from __future__ import annotations

import math

import gguf
import numpy as np

from hearth.convert.decoder import Array, DecoderConversion, require
from hearth.errors import ConversionError

ARCHITECTURES = ("Phi3ForCausalLM",)
_LONG = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight"
_SHORT = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight"
# llama.cpp looks this token up by name when it loads a phi3 model, and fails without it.
REQUIRED_TOKEN = "<|endoftext|>"


class Phi3Conversion(DecoderConversion):
    arch = gguf.MODEL_ARCH.PHI3
    rope_kinds = frozenset({"default", "longrope", "su"})

    def validate(self) -> None:
        act = self.config.get("hidden_act", "silu")
        require(act == "silu", f"hidden_act={act!r} is not supported for Phi-3 (silu only)")
        if REQUIRED_TOKEN not in self.vocab.tokens:
            raise ConversionError(
                f"{self.folder.root}: the tokenizer has no {REQUIRED_TOKEN} token, which "
                "llama.cpp requires to load a Phi-3 model"
            )

    def add_rope(self, writer: gguf.GGUFWriter) -> None:
        rope = self.params.rope
        writer.add_rope_freq_base(rope.theta)
        writer.add_rope_dimension_count(self._rotary_dims())
        original = self.config.get("original_max_position_embeddings")
        if original is not None:
            writer.add_rope_scaling_orig_ctx_len(int(original))
        if rope.kind in ("longrope", "su"):
            writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
            writer.add_rope_scaling_attn_factors(self._attention_factor())

    def add_arch_metadata(self, writer: gguf.GGUFWriter) -> None:
        writer.add_sliding_window(int(self.config.get("sliding_window") or 0))

    def extra_tensors(self) -> list[tuple[str, Array]]:
        rope = self.params.rope
        if rope.kind not in ("longrope", "su"):
            return []
        half = self._rotary_dims() // 2
        factors = []
        for name, key in ((_LONG, "long_factor"), (_SHORT, "short_factor")):
            values = np.asarray(rope.params.get(key), dtype=np.float32)
            require(values.shape == (half,), f"rope {key} must hold {half} numbers")
            factors.append((name, values))
        return factors

    def _rotary_dims(self) -> int:
        fraction = self.params.rope.params.get(
            "partial_rotary_factor", self.config.get("partial_rotary_factor")
        )
        return int(self.params.head_dim * float(fraction if fraction is not None else 1.0))

    def _attention_factor(self) -> float:
        if (factor := self.params.rope.params.get("attention_factor")) is not None:
            return float(factor)
        original = float(self.config.get("original_max_position_embeddings") or 0)
        scale = self.params.context_length / original if original else 1.0
        if scale <= 1.0:
            return 1.0
        return math.sqrt(1 + math.log(scale) / math.log(original))
