"""``--merge``: the trained LoRA merged into the base's weights and stored as a full model.

PEFT's ``merge_and_unload`` adds each adapter's scaled B·A to the weight it adapts. The merged
model is saved as a Hugging Face folder (safetensors, config, tokenizer) in the job's work
folder, converted to GGUF with Hearth's converter (:mod:`hearth.convert`), quantized if asked
with llama.cpp's quantizer (:mod:`hearth.store.quantize`, as ``hearth quantize`` does), and
registered as a model of its own: the merged GGUF as its model layer, the base's other layers
(template, parameters, license texts, card), the base's license record extended by a ``merge``
step, and the lineage layer. The base's Hugging Face source files are not inherited: they are
not these weights.

Precision: the adapted layers are merged in float32 (in bf16 a small update would round away),
the converter writes F32 for an F32 base and F16 for any other, and ``--quantize`` quantizes
that file once. A QLoRA base is held in 4-bit NF4, and merging into it would round
the merged weights to NF4: its adapter is moved onto the base loaded at full precision first.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hearth.convert import OutType, convert_hf_to_gguf
from hearth.finetune.options import TrainOptions
from hearth.finetune.train import add_lora
from hearth.license.lineage import LineageStep, derived_layers
from hearth.store import Descriptor, LocalModel, MediaType, Progress, Store, parse_name
from hearth.store.manifest import TITLE_ANNOTATION
from hearth.store.quantize import QuantizeOptions, parse_quant_type, quantize_gguf

# GGUF architectures whose Hugging Face form Hearth's converter turns back into GGUF.
MERGEABLE = frozenset({"llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"})
# What a merged model does not take from its base: its weights (in every form) and lineage.
_NOT_INHERITED = frozenset(
    {MediaType.MODEL, MediaType.ADAPTER, MediaType.LINEAGE, MediaType.HF_FILE}
)

ProgressFor = Callable[[str], Progress]  # a label → a progress(done, total) callback


@dataclass(frozen=True)
class MergedModel:
    path: Path  # the GGUF: a temporary file in the store's blob folder until registered
    quantization: str  # F32, F16, or the --quantize target


def out_type(base: LocalModel) -> OutType:
    """F32 for an F32 base, F16 otherwise: no less precise than the converter's default."""
    return OutType.F32 if base.info.quantization == "F32" else OutType.F16


def on_full_precision(peft_model: Any, full_base: Any, options: TrainOptions) -> Any:
    """The trained adapter of ``peft_model`` (a QLoRA model) put on ``full_base``."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    # embeddings are never adapted (add_lora); "auto" would look for a config.json on disk
    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    fresh = add_lora(full_base, options)
    set_peft_model_state_dict(fresh, state)
    return fresh


def merge_to_gguf(
    peft_model: Any,
    tokenizer: Any,
    work_dir: Path,
    output: Path,
    *,
    name: str,
    outtype: OutType,
    quantize: str | None,
    threads: int,
    progress_for: ProgressFor,
) -> MergedModel:
    """Merge, save as a Hugging Face folder, convert (and quantize) into ``output``."""
    hf_dir = work_dir / "merged"
    save_hf_folder(merge_in_float32(peft_model), tokenizer, hf_dir)
    converted = work_dir / "merged.gguf" if quantize else output
    try:
        progress = progress_for("converting the merged model to GGUF")
        convert_hf_to_gguf(hf_dir, converted, outtype=outtype, name=name, progress=progress)
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)  # the GGUF holds it all now
    if quantize is None:
        return MergedModel(output, outtype.name)
    quant, ftype = parse_quant_type(quantize)
    try:
        options = QuantizeOptions(ftype, threads)
        quantize_gguf(converted, output, options, progress_for(f"quantizing to {quant}"))
    finally:
        converted.unlink(missing_ok=True)
    return MergedModel(output, quant)


def merge_in_float32(peft_model: Any) -> Any:
    """``merge_and_unload`` with every adapted layer in float32 first: added to bf16 weights
    (8 significant bits), a LoRA update smaller than the weight's rounding step is lost
    (measured on Gemma 3 270M: a small random adapter vanished entirely). The merged layers
    are saved in float32; the converter rounds them once, to its output type."""
    import torch
    from peft.tuners.lora import LoraLayer

    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and isinstance(module, torch.nn.Module):
            module.to(torch.float32)  # the base layer and the adapter's A and B
    return peft_model.merge_and_unload()


def save_hf_folder(model: Any, tokenizer: Any, folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def register_merged(
    store: Store,
    name: str,
    base: LocalModel,
    merged: MergedModel,
    *,
    template: str | None,
    lineage: str,
) -> LocalModel:
    """Store ``merged`` as model ``name``, under ``base``'s terms, with ``lineage``."""
    kept = [layer for layer in base.manifest.layers if _inherited(layer, template)]
    with store.locked():
        blob = store.blobs.adopt(merged.path)
        title = {TITLE_ANNOTATION: f"{parse_name(name).name}.gguf"}
        layers = [Descriptor(MediaType.MODEL, blob.digest, blob.size, title), *kept]
        if template is not None:
            layers.append(store.add_text_layer(MediaType.TEMPLATE, template))
        layers = derived_layers(store, base, layers, LineageStep.now("merge", base))
        layers.append(store.add_text_layer(MediaType.LINEAGE, lineage))
        config = store.config_of(base)
        config = replace(
            config,
            quantization=merged.quantization,
            source=f"merged fine-tune of {base.name}",
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            has_chat_template=config.has_chat_template or template is not None,
        )
        return store.commit(name, config, layers)


def _inherited(layer: Descriptor, template: str | None) -> bool:
    if layer.media_type == MediaType.TEMPLATE:
        return template is None  # the fine-tune's own template replaces the base's
    return layer.media_type not in _NOT_INHERITED
