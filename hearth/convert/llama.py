"""Llama and Mistral (``LlamaForCausalLM``, ``MistralForCausalLM``) → llama.cpp's ``llama``.

One change of form beyond names: Hugging Face's Llama applies RoPE to the two halves of each
head (``rotate_half``), llama.cpp's ``llama`` graph to adjacent pairs. The rows of ``q_proj``
and ``k_proj`` are reordered (:func:`permute_for_rope`) so that the same pairs rotate together,
as llama.cpp's own converter does. Llama 3.1's ``llama3`` RoPE scaling becomes the
``rope_freqs`` tensor.
"""

from __future__ import annotations

import gguf
import numpy as np

from hearth.convert.decoder import Array, DecoderConversion, llama3_rope_factors, require

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
_ROPE_FREQS = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"


class LlamaConversion(DecoderConversion):
    arch = gguf.MODEL_ARCH.LLAMA
    rope_kinds = frozenset({"default", "linear", "yarn", "llama3"})

    def validate(self) -> None:
        act = self.config.get("hidden_act", "silu")
        require(act == "silu", f"hidden_act={act!r} is not supported for Llama (silu only)")
        require(not self.config.get("mlp_bias"), "mlp_bias=true is not supported for Llama")

    def transform(self, gguf_name: str, data: Array) -> Array:
        params = self.params
        if ".attn_q." in gguf_name:
            return permute_for_rope(data, params.head_count)
        if ".attn_k." in gguf_name:
            return permute_for_rope(data, params.head_count_kv)
        return data

    def extra_tensors(self) -> list[tuple[str, Array]]:
        rope = self.params.rope
        if rope.kind != "llama3":
            return []
        return [(_ROPE_FREQS, llama3_rope_factors(rope, self.params.head_dim))]


def permute_for_rope(weights: Array, heads: int) -> Array:
    """Each head's rows from [first halves..., second halves...] to interleaved pairs."""
    rows = weights.shape[0]
    grouped = weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
    return np.ascontiguousarray(grouped.swapaxes(1, 2).reshape(weights.shape))
