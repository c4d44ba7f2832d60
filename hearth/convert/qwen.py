"""Qwen 2 and Qwen 3 (``Qwen2ForCausalLM``, ``Qwen3ForCausalLM``) → ``qwen2`` / ``qwen3``.

llama.cpp's Qwen graphs rotate the two halves of each head like Hugging Face (NEOX style), so
the weights need no reordering. Qwen 2 has q/k/v biases; Qwen 3 has none but normalises each
query and key head (``q_norm``/``k_norm`` → ``attn_q_norm``/``attn_k_norm``). Sliding-window
attention (``use_sliding_window``, off in every released Qwen 2/3) is refused.
"""

from __future__ import annotations

import gguf

from hearth.convert.decoder import DecoderConversion, require

QWEN2_ARCHITECTURES = ("Qwen2ForCausalLM",)
QWEN3_ARCHITECTURES = ("Qwen3ForCausalLM",)


class Qwen2Conversion(DecoderConversion):
    arch = gguf.MODEL_ARCH.QWEN2

    def validate(self) -> None:
        act = self.config.get("hidden_act", "silu")
        require(act == "silu", f"hidden_act={act!r} is not supported for Qwen (silu only)")
        require(
            not self.config.get("use_sliding_window"),
            "use_sliding_window=true is not supported for Qwen",
        )


class Qwen3Conversion(Qwen2Conversion):
    arch = gguf.MODEL_ARCH.QWEN3
