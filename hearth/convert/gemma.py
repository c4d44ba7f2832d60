"""Gemma 2 and Gemma 3 text models (``Gemma2ForCausalLM``, ``Gemma3ForCausalLM``) →
llama.cpp's ``gemma2`` / ``gemma3``.

- Gemma's RMSNorm multiplies by ``1 + weight`` and Hugging Face stores ``weight``; llama.cpp
  multiplies by the stored value, so every norm weight (q/k norms included) gains 1 here.
- The embedding is scaled by sqrt(hidden size) inside llama.cpp's graph: nothing to do here.
- The output matrix is the embedding (tied); ``lm_head`` is never written.
- Sliding-window layers come from ``layer_types`` as a per-layer pattern, their RoPE base
  (``rope_local_base_freq``) as ``rope.freq_base_swa``; Gemma 2's logit soft-capping as its keys.
- llama.cpp scales queries by 1/sqrt(head_dim), except in the 27B models where it uses
  1/sqrt(hidden/heads); a ``query_pre_attn_scalar`` other than that is refused.
"""

from __future__ import annotations

import gguf

from hearth.convert.decoder import Array, DecoderConversion, require
from hearth.convert.hf_folder import SourceTensor

GEMMA2_ARCHITECTURES = ("Gemma2ForCausalLM",)
GEMMA3_ARCHITECTURES = ("Gemma3ForCausalLM",)
_GELU = ("gelu_pytorch_tanh", "gelu")
_LAYERS_OF_27B = {gguf.MODEL_ARCH.GEMMA2: 46, gguf.MODEL_ARCH.GEMMA3: 62}


class Gemma2Conversion(DecoderConversion):
    arch = gguf.MODEL_ARCH.GEMMA2

    def validate(self) -> None:
        act = self.config.get("hidden_activation") or self.config.get("hidden_act", "gelu")
        require(act in _GELU, f"hidden_activation={act!r} is not supported for Gemma (GELU only)")
        params = self.params
        scalar = self.config.get("query_pre_attn_scalar", params.head_dim)
        expected = params.head_dim
        if params.block_count == _LAYERS_OF_27B[self.arch]:
            expected = params.embedding_length // params.head_count
        require(
            scalar == expected,
            f"query_pre_attn_scalar={scalar} differs from the {expected} llama.cpp uses "
            "for this model",
        )

    def add_arch_metadata(self, writer: gguf.GGUFWriter) -> None:
        config = self.config
        if config.get("attn_logit_softcapping"):
            writer.add_attn_logit_softcapping(float(config["attn_logit_softcapping"]))
        if config.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
        pattern = self.swa_layers()
        if config.get("sliding_window") and (pattern is None or any(pattern)):
            writer.add_sliding_window(int(config["sliding_window"]))
        if pattern is not None:
            writer.add_sliding_window_pattern(pattern)

    def tensor_name(self, tensor: SourceTensor) -> str | None:
        if tensor.name == "lm_head.weight":
            return None  # Gemma always ties it to the embedding
        return super().tensor_name(tensor)

    def transform(self, gguf_name: str, data: Array) -> Array:
        if gguf_name.endswith("norm.weight"):
            return data.astype("float32") + 1.0
        return data


class Gemma3Conversion(Gemma2Conversion):
    arch = gguf.MODEL_ARCH.GEMMA3

    def validate(self) -> None:
        super().validate()
        require(
            not self.config.get("attn_logit_softcapping"),
            "attn_logit_softcapping is not supported for Gemma 3",
        )
