"""The base model for training: its Hugging Face source if the store kept one, else its GGUF.

A Hugging Face import keeps the folder's own files (``HF_FILE`` layers): they are linked into
the job's work folder (hard links to the blobs, copies where links fail) and loaded with
transformers as they are. Other models start from transformers' GGUF loader, which dequantizes
every tensor. That loader marks the model as "quantized with gguf", and both
``save_pretrained`` and training refuse such a model until the mark (``quantization_config``,
``hf_quantizer``, ``is_quantized``) is cleared.

QLoRA cannot combine ``gguf_file=`` with a 4-bit config: the dequantized model is saved once as a
Hugging Face folder (cached under ``HEARTH_HOME/finetune/hf/<digest>``) and reloaded from there
in NF4 (a Hugging Face source is loaded in NF4 directly). bitsandbytes' AVX512-BF16 CPU path
repacks a 4-bit layer's weights the first time it runs in eval mode under no_grad and never
unpacks them, after which training silently learns far less; it is switched off on every 4-bit
layer.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import FinetuneError, StoreError
from hearth.store import BlobStore, Descriptor, LocalModel, MediaType
from hearth.store.manifest import TITLE_ANNOTATION

# GGUF architectures that are not causal language models (nothing to fine-tune with a LM loss).
NOT_CAUSAL = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder"})
# Gemma 3 trains correctly only with eager attention (transformers' advice for this model).
_EAGER = frozenset({"gemma2", "gemma3"})
# A source file's name comes from a manifest (maybe a registry's): a plain name, nothing else.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
HF_SOURCE = "hf-source"  # LoadedBase.source: the imported Hugging Face files
GGUF = "gguf"  # LoadedBase.source: the store's GGUF, dequantized


@dataclass
class LoadedBase:
    """A transformers model and tokenizer ready to take LoRA adapters."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    architecture: str  # the GGUF's general.architecture
    gguf_path: Path
    source: str = GGUF  # what it was loaded from: HF_SOURCE or GGUF


def hf_source(model: LocalModel) -> list[Descriptor]:
    """The Hugging Face files an import kept with ``model`` (none for GGUF imports)."""
    return [layer for layer in model.manifest.layers if layer.media_type == MediaType.HF_FILE]


def check_trainable(model: LocalModel) -> None:
    """Refuse, saying why, a base that cannot be fine-tuned here."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    arch = model.info.architecture
    if arch in NOT_CAUSAL:
        raise FinetuneError(
            f"{model.name} is a {arch} model, an encoder for embeddings, not a causal language "
            "model: fine-tuning trains a model to continue text; choose a causal LM such as "
            "gemma3:270m"
        )
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and not hf_source(model):
        supported = ", ".join(sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a != "general"))
        raise FinetuneError(
            f"{model.name} is a {arch} model; transformers cannot load {arch} GGUF files for "
            f"training (it can: {supported})"
        )
    if any(layer.media_type == MediaType.ADAPTER for layer in model.manifest.layers):
        raise FinetuneError(
            f"{model.name} already carries a LoRA adapter; fine-tune its base model instead"
        )


def load_base(
    model: LocalModel, work_dir: Path, *, dtype: str, method: str, cache_dir: Path
) -> LoadedBase:
    """The base as a trainable transformers model; ``method`` is "lora" or "qlora"."""
    import torch

    check_trainable(model)
    arch = model.info.architecture
    extra = {"attn_implementation": "eager"} if arch in _EAGER else {}
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    if hf_source(model):
        tokenizer, loaded = _from_hf_source(model, work_dir, method, torch_dtype, extra)
        source = HF_SOURCE
    else:
        tokenizer, loaded = _from_gguf(model, work_dir, method, torch_dtype, extra, cache_dir)
        source = GGUF
    loaded.config.use_cache = False
    return LoadedBase(loaded, tokenizer, arch, model.model_path, source)


def _from_hf_source(
    model: LocalModel, work_dir: Path, method: str, torch_dtype: Any, extra: dict[str, str]
) -> tuple[Any, Any]:
    folder = materialise_hf_source(model, work_dir / HF_SOURCE)
    loaded = (
        _load_4bit(folder, extra) if method == "qlora" else _load_hf(folder, torch_dtype, extra)
    )
    return _tokenizer(folder), loaded


def _from_gguf(
    model: LocalModel,
    work_dir: Path,
    method: str,
    torch_dtype: Any,
    extra: dict[str, str],
    cache_dir: Path,
) -> tuple[Any, Any]:
    link_dir = _gguf_link(model.model_path, work_dir)
    tokenizer = _tokenizer(link_dir, "model.gguf")
    if method == "qlora":
        return tokenizer, _load_4bit(
            _hf_folder(model, link_dir, tokenizer, cache_dir, extra), extra
        )
    return tokenizer, _load_gguf(link_dir, torch_dtype, extra)


def materialise_hf_source(model: LocalModel, folder: Path) -> Path:
    """``model``'s Hugging Face files as a folder: hard links to the blobs (nothing may write
    to them), or copies where the work folder is on another file system."""
    blobs = BlobStore(model.model_path.parent)  # all of a model's blobs live in one store
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for layer in hf_source(model):
        name = layer.annotations.get(TITLE_ANNOTATION, "")
        if not _FILE_NAME.fullmatch(name):
            raise StoreError(f"{model.name}: a Hugging Face source file has a bad name {name!r}")
        blob = blobs.path(layer.digest)
        if not blob.is_file():
            raise StoreError(f"{model.name}: blob {layer.digest} ({name}) is missing")
        try:
            os.link(blob, folder / name)
        except OSError:
            shutil.copyfile(blob, folder / name)
    return folder


def _gguf_link(blob: Path, work_dir: Path) -> Path:
    """A folder holding ``model.gguf`` → the blob: transformers wants a folder and a file name."""
    folder = work_dir / "base"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "model.gguf"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(blob.resolve())
    return folder


def _tokenizer(folder: Path, gguf_file: str | None = None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # labels are built explicitly: EOS keeps its loss
    return tokenizer


def _load_gguf(folder: Path, torch_dtype: Any, extra: dict[str, str]) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), gguf_file="model.gguf", dtype=torch_dtype, **extra
        )
    except (ValueError, KeyError, RuntimeError) as error:
        raise FinetuneError(f"transformers cannot load this GGUF for training: {error}") from None
    _clear_gguf_mark(model)
    return model


def _load_hf(folder: Path, torch_dtype: Any, extra: dict[str, str]) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype, **extra)
    except (ValueError, KeyError, OSError) as error:
        raise FinetuneError(f"transformers cannot load this model for training: {error}") from None


def _clear_gguf_mark(model: Any) -> None:
    """Forget that the weights came from a GGUF: they are dequantized, ordinary tensors now."""
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False


def _hf_folder(
    model: LocalModel, link_dir: Path, tokenizer: Any, cache_dir: Path, extra: dict[str, str]
) -> Path:
    """The dequantized base saved as a Hugging Face folder, once per model blob."""
    import torch

    digest = model.model_path.name.removeprefix("sha256-")
    target = cache_dir / digest
    if (target / "config.json").is_file():
        return target
    staging = cache_dir / f".tmp-{digest}"
    shutil.rmtree(staging, ignore_errors=True)
    loaded = _load_gguf(link_dir, torch.bfloat16, extra)
    loaded.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    staging.rename(target)
    return target


def _load_4bit(folder: Path, extra: dict[str, str]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), quantization_config=config, dtype=torch.bfloat16, **extra
    )
    disable_bf16_repacking(model)
    return model


def disable_bf16_repacking(model: Any) -> int:
    """Switch off bitsandbytes' AVX512-BF16 inference repacking on every 4-bit layer (see the
    module docstring); returns how many layers it touched."""
    from bitsandbytes.nn.modules import Linear4bit

    count = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count
