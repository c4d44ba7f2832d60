"""Tiny llama-architecture GGUF models with random weights, for tests, benchmarks and smoke checks.

A 2-layer model with a 259-token byte vocabulary loads and generates in llama.cpp in milliseconds,
so most tests need no real model. Weights come from a seeded generator: the same arguments always
produce the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import gguf.quants
import numpy as np

BYTE_TOKEN_OFFSET = 3  # <unk>, <s>, </s> come first, then <0x00>..<0xFF>


@dataclass(frozen=True)
class TinyModelSpec:
    n_layers: int = 2
    n_embd: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    n_ff: int = 128
    context_length: int = 2048
    seed: int = 0
    name: str = "tiny-llama"
    license: str | None = "apache-2.0"
    chat_template: str | None = None
    quantized: bool = False  # Q8_0 matrices: exercises llama.cpp's quantized kernels


def byte_vocabulary() -> tuple[list[str], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ] + [gguf.TokenType.BYTE] * 256
    return tokens, [int(t) for t in types]


def write_tiny_gguf(path: Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write a loadable llama GGUF to ``path`` and return it."""
    tokens, types = byte_vocabulary()
    writer = gguf.GGUFWriter(str(path), "llama")
    _add_metadata(writer, spec, tokens, types)
    for name, tensor in _weights(spec, len(tokens)).items():
        if spec.quantized and tensor.ndim == 2:
            q8 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(tensor, q8), raw_dtype=q8)
        else:
            writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_metadata(
    writer: gguf.GGUFWriter, spec: TinyModelSpec, tokens: list[str], types: list[int]
) -> None:
    writer.add_name(spec.name)
    if spec.license:
        writer.add_license(spec.license)
    writer.add_block_count(spec.n_layers)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.n_embd)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_heads)
    writer.add_head_count_kv(spec.n_kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(spec.n_embd // spec.n_heads)
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if spec.quantized else gguf.LlamaFileType.ALL_F32
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    if spec.chat_template is not None:
        writer.add_chat_template(spec.chat_template)


def _weights(spec: TinyModelSpec, n_vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    head_dim = spec.n_embd // spec.n_heads
    kv_dim = head_dim * spec.n_kv_heads

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.5).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    weights = {
        "token_embd.weight": matrix(n_vocab, spec.n_embd),
        "output_norm.weight": ones(spec.n_embd),
        "output.weight": matrix(n_vocab, spec.n_embd),
    }
    for i in range(spec.n_layers):
        weights |= {
            f"blk.{i}.attn_norm.weight": ones(spec.n_embd),
            f"blk.{i}.attn_q.weight": matrix(spec.n_embd, spec.n_embd),
            f"blk.{i}.attn_k.weight": matrix(kv_dim, spec.n_embd),
            f"blk.{i}.attn_v.weight": matrix(kv_dim, spec.n_embd),
            f"blk.{i}.attn_output.weight": matrix(spec.n_embd, spec.n_embd),
            f"blk.{i}.ffn_norm.weight": ones(spec.n_embd),
            f"blk.{i}.ffn_gate.weight": matrix(spec.n_ff, spec.n_embd),
            f"blk.{i}.ffn_up.weight": matrix(spec.n_ff, spec.n_embd),
            f"blk.{i}.ffn_down.weight": matrix(spec.n_embd, spec.n_ff),
        }
    return weights


def write_tiny_lora(
    path: Path,
    spec: TinyModelSpec = TinyModelSpec(),
    *,
    rank: int = 4,
    alpha: float = 8.0,
    seed: int = 7,
    architecture: str = "llama",
) -> Path:
    """A LoRA adapter in llama.cpp's GGUF format for the tiny model of ``spec``: low-rank
    ``lora_a`` (rank × in) and ``lora_b`` (out × rank) pairs on every attention and FFN matrix.
    Random and large enough that a model with it answers differently from one without."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, weight in _weights(spec, len(byte_vocabulary()[0])).items():
        if not name.startswith("blk.") or weight.ndim != 2:
            continue
        rows, cols = weight.shape
        stem = name.removesuffix(".weight")
        writer.add_tensor(f"{stem}.weight.lora_a", _normal(rng, rank, cols))
        writer.add_tensor(f"{stem}.weight.lora_b", _normal(rng, rows, rank))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _normal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return (rng.standard_normal((rows, cols)) * 0.5).astype(np.float32)
