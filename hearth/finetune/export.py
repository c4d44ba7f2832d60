"""A PEFT LoRA adapter as a llama.cpp GGUF LoRA, checked against the base GGUF's shapes.

llama.cpp's loader wants: the base's ``general.architecture``, ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``; for each adapted matrix ``<base tensor>.lora_a``
(PEFT's ``lora_A``, rank × in) and ``<base tensor>.lora_b`` (``lora_B``, out × rank), untransposed;
it checks base.ne0 == A.ne0, base.ne1 == B.ne1 and A.ne1 == B.ne0, and scales by alpha / rank.

- Names: the PEFT module's Hugging Face name (``model.layers.0.self_attn.q_proj``) mapped with
  ``gguf.get_tensor_name_map``.
- ``llama``-architecture GGUFs store q/k rows permuted (llama.cpp's converter interleaves the
  rotary halves; transformers' GGUF loader undoes it), so q/k ``lora_B`` get the same permutation.
- PEFT's own scale (rsLoRA's alpha / sqrt(r), per-module alpha or rank) is folded into B, so that
  llama.cpp's alpha / rank gives exactly PEFT's output.
- DoRA and ``modules_to_save`` have no llama.cpp form and are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hearth.errors import FinetuneError
from hearth.store.gguf_shape import parse_gguf_header

_PERMUTED_ARCHS = frozenset({"llama"})


@dataclass(frozen=True)
class LoraPair:
    base_name: str  # the base GGUF tensor, e.g. blk.0.attn_q.weight
    a: np.ndarray  # rank × in
    b: np.ndarray  # out × rank, PEFT's scale folded in relative to alpha / rank


def export_gguf_lora(peft_model: Any, base_gguf: Path, destination: Path) -> Path:
    """Write ``peft_model``'s active LoRA adapter as a llama.cpp GGUF LoRA at ``destination``."""
    header = _read_header(base_gguf)
    arch = header[0]
    config = peft_model.peft_config[peft_model.active_adapter]
    _refuse_unrepresentable(config)
    alpha = float(config.lora_alpha)
    pairs = lora_pairs(peft_model, arch, alpha)
    check_shapes(pairs, header[1])
    _write(destination, arch, alpha, pairs)
    return destination


def _read_header(path: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    import mmap

    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        parsed = parse_gguf_header(data)
        return parsed.shape.architecture, {entry.name: entry.dims for entry in parsed.tensors}


def _refuse_unrepresentable(config: Any) -> None:
    if getattr(config, "use_dora", False):
        raise FinetuneError("DoRA adapters cannot be written as llama.cpp LoRA adapters")
    if getattr(config, "modules_to_save", None):
        raise FinetuneError(
            f"modules_to_save ({config.modules_to_save}) cannot be written as a llama.cpp LoRA"
        )


def lora_pairs(peft_model: Any, arch: str, alpha: float) -> list[LoraPair]:
    from peft.tuners.lora import LoraLayer

    model_config = peft_model.get_base_model().config
    n_blocks = int(model_config.num_hidden_layers)
    name_map = gguf.get_tensor_name_map(_model_arch(arch), n_blocks)
    adapter = peft_model.active_adapter
    pairs = []
    for module_name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or adapter not in module.lora_A:
            continue
        hf_name = module_name.removeprefix("base_model.model.")
        gguf_name = name_map.get_name(hf_name)
        if gguf_name is None:
            raise FinetuneError(f"no GGUF tensor for the adapted module {hf_name}")
        a = _numpy(module.lora_A[adapter].weight)
        b = _numpy(module.lora_B[adapter].weight)
        rank = a.shape[0]
        b = b * (float(module.scaling[adapter]) / (alpha / rank))
        if arch in _PERMUTED_ARCHS and gguf_name.endswith(("attn_q", "attn_k")):
            heads = model_config.num_attention_heads
            if gguf_name.endswith("attn_k"):
                heads = model_config.num_key_value_heads or heads
            b = permute_rows(b, heads)
        pairs.append(LoraPair(f"{gguf_name}.weight", a.astype(np.float32), b.astype(np.float32)))
    if not pairs:
        raise FinetuneError("the model has no LoRA layers to export")
    return pairs


def _model_arch(arch: str) -> gguf.MODEL_ARCH:
    for model_arch, name in gguf.MODEL_ARCH_NAMES.items():
        if name == arch:
            return model_arch
    raise FinetuneError(f"gguf does not know the architecture {arch!r}")


def _numpy(weight: Any) -> np.ndarray:
    return np.asarray(weight.detach().float().cpu().numpy())


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py LlamaModel.permute) on rows."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def check_shapes(pairs: list[LoraPair], base_tensors: dict[str, tuple[int, ...]]) -> None:
    """The checks llama.cpp's adapter loader makes, done here so a mismatch says where."""
    for pair in pairs:
        dims = base_tensors.get(pair.base_name)
        if dims is None:
            raise FinetuneError(f"the base GGUF has no tensor {pair.base_name}")
        base_in, base_out = dims[0], dims[1]
        rank, a_in = pair.a.shape
        b_out, b_rank = pair.b.shape
        if a_in != base_in or b_out != base_out or rank != b_rank:
            raise FinetuneError(
                f"{pair.base_name}: LoRA A {pair.a.shape} / B {pair.b.shape} do not fit the "
                f"base tensor (in {base_in}, out {base_out})"
            )


def _write(destination: Path, arch: str, alpha: float, pairs: list[LoraPair]) -> None:
    temp = destination.with_name(f".tmp-{destination.name}")
    writer = gguf.GGUFWriter(str(temp), arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for pair in pairs:
            writer.add_tensor(f"{pair.base_name}.lora_a", pair.a)
            writer.add_tensor(f"{pair.base_name}.lora_b", pair.b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
        temp.replace(destination)
    except BaseException:
        writer.close()
        temp.unlink(missing_ok=True)
        raise
