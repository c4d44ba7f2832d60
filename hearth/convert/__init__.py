"""Conversions into GGUF: Hugging Face safetensors folders (BERT first). See docs/STORE.md."""

from hearth.convert.hf_to_gguf import (
    SUPPORTED_ARCHITECTURES,
    ConversionResult,
    OutType,
    Progress,
    convert_hf_to_gguf,
)

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ConversionResult",
    "OutType",
    "Progress",
    "convert_hf_to_gguf",
]
