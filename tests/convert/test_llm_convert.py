"""Causal LM folders → GGUF, checked against transformers: llama.cpp must compute the same
logits from the converted file as transformers from the folder, and tokenize the same way.

Tolerances (random weights, logits of magnitude about 1-30): with F32 output the largest
difference over all positions and the whole vocabulary must stay under 1e-3 of the largest
logit (float32 arithmetic in a different order; measured about 1e-5); with F16 output under
2e-2 (measured about 3e-3).
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from hearth.config import Settings
from hearth.convert import SUPPORTED_ARCHITECTURES, OutType, convert_hf_to_gguf
from hearth.convert.decoder import rope_settings
from hearth.errors import ConversionError, MalformedFileError
from hearth.store import Store
from tests.convert.llm_helpers import (
    CHAT_TEMPLATE,
    GEMMA_TOKENIZER,
    LLAMA2_TOKENIZER,
    LLAMA3_TOKENIZER,
    PHI3_TOKENIZER,
    QWEN_TOKENIZER,
    SAMPLE_TEXTS,
    TokenizerSpec,
    build_tokenizer,
    reference_logits,
    token_count,
    write_tiny_llm,
)

pytest.importorskip("transformers")

GGML_TYPE_F32 = 0
F32_TOLERANCE = 1e-3
F16_TOLERANCE = 2e-2
PROMPT = SAMPLE_TEXTS[0] + " " + SAMPLE_TEXTS[1]  # about 15 tokens: longer than the windows


@dataclass(frozen=True)
class Case:
    config_class: str
    tokenizer: TokenizerSpec
    extra: dict[str, Any]
    norm_offset: float = 1.0


SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
CASES = {
    "llama": Case("LlamaConfig", LLAMA3_TOKENIZER, {}),
    "llama-sentencepiece": Case("LlamaConfig", LLAMA2_TOKENIZER, {}),
    "llama3-rope-scaling": Case(
        "LlamaConfig",
        LLAMA3_TOKENIZER,
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            }
        },
    ),
    "mistral": Case("MistralConfig", LLAMA2_TOKENIZER, {"sliding_window": None}),
    "qwen2": Case("Qwen2Config", QWEN_TOKENIZER, {"tie_word_embeddings": True}),
    "qwen3": Case("Qwen3Config", QWEN_TOKENIZER, {"head_dim": 64}),  # head_dim ≠ hidden/heads
    "gemma2": Case(
        "Gemma2Config",
        GEMMA_TOKENIZER,
        {"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 4},
        norm_offset=0.0,
    ),
    "gemma3": Case(
        "Gemma3TextConfig",
        GEMMA_TOKENIZER,
        {
            "head_dim": 32,
            "query_pre_attn_scalar": 32,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        norm_offset=0.0,
    ),
    "phi3": Case("Phi3Config", PHI3_TOKENIZER, {}),
    "phi3-longrope": Case(
        "Phi3Config",
        PHI3_TOKENIZER,
        {
            # llama.cpp pads the context to 256 and picks the long factors above the original
            # length; transformers picks them above it too: both use the short ones here.
            "max_position_embeddings": 1024,
            "original_max_position_embeddings": 256,
            "rope_parameters": {
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "short_factor": [1.0 + 0.25 * i for i in range(16)],  # head_dim 32 / 2
                "long_factor": [2.0 + 0.5 * i for i in range(16)],
            },
        },
    ),
}


def build_folder(root: Path, case: Case, *, seed: int = 0) -> Path:
    import transformers

    tokenizer = build_tokenizer(case.tokenizer)
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": None,
    }
    config = getattr(transformers, case.config_class)(
        **{**SHAPE, **case.extra}, vocab_size=token_count(tokenizer), **ids
    )
    return write_tiny_llm(root, config, tokenizer, seed=seed, norm_offset=case.norm_offset)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_folder(tmp_path_factory.mktemp("hf") / name, CASES[name])
        return built[name]

    return get


def llama_logits(path: Path, ids: list[int]) -> Any:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=64,
        n_batch=64,
        logits_all=True,
        n_threads=2,
        type_k=GGML_TYPE_F32,  # the KV cache is F16 by default: 1e-3 off on its own
        type_v=GGML_TYPE_F32,
        verbose=True,  # False redirects the C streams to /dev/null and leaks the handle
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def hf_ids(folder: Path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(folder)(text)["input_ids"])


def relative_error(got: Any, expected: Any) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("name", list(CASES))
def test_llama_cpp_logits_match_transformers(
    folders: Callable[[str], Path], tmp_path: Path, name: str
) -> None:
    folder = folders(name)
    result = convert_hf_to_gguf(folder, tmp_path / "model.gguf", outtype=OutType.F32)
    ids = hf_ids(folder, PROMPT)
    assert len(ids) >= 10
    expected = reference_logits(folder, ids)
    got = llama_logits(result.path, ids)
    assert got.shape == expected.shape
    assert relative_error(got, expected) < F32_TOLERANCE
    # The check can fail: positions differ from each other far more than the tolerance.
    assert relative_error(expected[1:], expected[:-1]) > 100 * F32_TOLERANCE


def test_f16_output_stays_close(folders: Callable[[str], Path], tmp_path: Path) -> None:
    folder = folders("llama")
    result = convert_hf_to_gguf(folder, tmp_path / "model.gguf")  # F16 is the default
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(result.path).tensors}
    assert types["blk.0.attn_q.weight"] == "F16"
    assert types["blk.0.attn_norm.weight"] == "F32"
    ids = hf_ids(folder, PROMPT)
    assert relative_error(llama_logits(result.path, ids), reference_logits(folder, ids)) < (
        F16_TOLERANCE
    )


@pytest.mark.parametrize("name", ["llama", "qwen2", "llama-sentencepiece", "gemma3"])
def test_llama_cpp_tokenizes_like_transformers(
    folders: Callable[[str], Path], tmp_path: Path, name: str
) -> None:
    from llama_cpp import Llama

    folder = folders(name)
    path = convert_hf_to_gguf(folder, tmp_path / "model.gguf").path
    llm = Llama(model_path=str(path), n_ctx=64, vocab_only=True, verbose=True)
    try:
        for text in SAMPLE_TEXTS:
            assert llm.tokenize(text.encode(), add_bos=True, special=False) == hf_ids(
                folder, text
            ), text
    finally:
        llm.close()


def fields(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def test_metadata_of_a_byte_level_model(folders: Callable[[str], Path], tmp_path: Path) -> None:
    folder = folders("qwen2")
    result = convert_hf_to_gguf(folder, tmp_path / "model.gguf", name="tiny-qwen")
    meta = fields(result.path)
    assert (result.architecture, result.name) == ("qwen2", "tiny-qwen")
    assert result.license == "apache-2.0"
    assert meta["qwen2.block_count"] == 2
    assert meta["qwen2.attention.head_count_kv"] == 2
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert meta["tokenizer.ggml.add_bos_token"] is False
    tokens = meta["tokenizer.ggml.tokens"]
    assert len(tokens) % 64 == 0 and tokens[-1] == f"[PAD{len(tokens) - 1}]"
    assert meta["tokenizer.ggml.token_type"][-1] == gguf.TokenType.UNUSED
    eos = meta["tokenizer.ggml.eos_token_id"]
    assert tokens[eos] == "<|endoftext|>"
    assert meta["tokenizer.ggml.token_type"][eos] == gguf.TokenType.CONTROL
    assert len(meta["tokenizer.ggml.merges"]) > 100
    names = {t.name for t in gguf.GGUFReader(result.path).tensors}
    assert "output.weight" not in names  # tied: llama.cpp reuses token_embd
    assert "blk.1.attn_q.bias" in names


def test_metadata_of_a_sentencepiece_model(folders: Callable[[str], Path], tmp_path: Path) -> None:
    meta = fields(convert_hf_to_gguf(folders("gemma3"), tmp_path / "model.gguf").path)
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.add_space_prefix"] is False  # Gemma's tokenizer adds none
    assert meta["tokenizer.ggml.add_bos_token"] is True
    types = meta["tokenizer.ggml.token_type"]
    tokens = meta["tokenizer.ggml.tokens"]
    assert tokens[3:5] == ["<0x00>", "<0x01>"] and types[3] == gguf.TokenType.BYTE
    assert types[0] == gguf.TokenType.CONTROL  # <unk> is an added special token here
    assert meta["gemma3.attention.sliding_window"] == 4
    assert meta["gemma3.attention.sliding_window_pattern"] == [True, False]
    assert meta["gemma3.rope.freq_base"] == 1_000_000.0
    assert meta["gemma3.rope.freq_base_swa"] == 10_000.0


def test_bf16_weights_give_the_same_model(folders: Callable[[str], Path], tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(folders("qwen3"), tmp_path / "bf16")
    weights = load_file(folder / "model.safetensors")
    rounded = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    save_file(rounded, folder / "model.safetensors", metadata={"format": "pt"})
    reader = gguf.GGUFReader(
        convert_hf_to_gguf(folder, tmp_path / "model.gguf", outtype=OutType.F32).path
    )
    got = {t.name: np.array(t.data) for t in reader.tensors}
    expected = rounded["model.layers.1.mlp.down_proj.weight"].float().numpy()
    assert np.array_equal(got["blk.1.ffn_down.weight"], expected)


def test_progress_counts_every_tensor(folders: Callable[[str], Path], tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    folder = folders("llama3-rope-scaling")
    result = convert_hf_to_gguf(folder, tmp_path / "m.gguf", progress=lambda *p: seen.append(p))
    assert len(seen) == result.tensor_count
    assert seen[-1][0] == seen[-1][1]
    names = {t.name for t in gguf.GGUFReader(result.path).tensors}
    assert "rope_freqs.weight" in names  # computed from the config, not read from the folder


def test_pickle_only_llm_folder_is_refused(folders: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folders("llama") / name, folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"not": "opened"}))
    with pytest.raises(ConversionError, match="arbitrary code"):
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")
    assert list(tmp_path.glob("*.gguf")) == []


def test_unsupported_architecture_lists_the_supported(
    folders: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = shutil.copytree(folders("llama"), tmp_path / "mamba")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "architectures": ["MambaForCausalLM"]})
    )
    with pytest.raises(ConversionError) as caught:
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")
    message = str(caught.value)
    assert "architecture MambaForCausalLM is not supported" in message
    for name in ("LlamaForCausalLM", "Qwen3ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM"):
        assert name in SUPPORTED_ARCHITECTURES and name in message


def test_unknown_pre_tokenizer_is_refused(folders: Callable[[str], Path], tmp_path: Path) -> None:
    folder = shutil.copytree(folders("llama"), tmp_path / "odd")
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\w+|\s+"
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConversionError, match=r"pre-tokenizer is not one llama\.cpp"):
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")


def test_unsupported_rope_scaling_is_refused(
    folders: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = shutil.copytree(folders("qwen2"), tmp_path / "dynamic")
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="RoPE scaling 'dynamic' is not supported"):
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")


def test_truncated_weights_are_refused_before_anything_is_written(
    folders: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = shutil.copytree(folders("qwen2"), tmp_path / "truncated")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])  # the header is intact, the data is not
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MalformedFileError, match="runs past the end"):
        convert_hf_to_gguf(folder, out / "model.gguf")
    assert list(out.iterdir()) == []


def test_failure_while_writing_leaves_no_file(
    folders: Callable[[str], Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    written: list[int] = []

    def fail_after_the_first_tensor(done: int, total: int) -> None:
        written.append(done)
        raise OSError("no space left on the device (injected)")

    with pytest.raises(OSError, match="injected"):
        convert_hf_to_gguf(
            folders("qwen2"), out / "model.gguf", progress=fail_after_the_first_tensor
        )
    assert written and written[0] > 0  # it failed with tensor data already in the file
    assert list(out.iterdir()) == []


def test_hearth_import_of_a_causal_lm(
    folders: Callable[[str], Path], settings: Settings, tmp_path: Path
) -> None:
    folder = shutil.copytree(folders("gemma3"), tmp_path / "tiny-gemma")
    model = Store(settings).import_hf_dir(folder, "acme/tiny-gemma:v1")
    info = model.info
    assert (info.architecture, info.quantization, info.context_length) == ("gemma3", "F16", 256)
    assert info.license_id == "apache-2.0"
    assert info.has_template is True
    assert info.source == "dir:tiny-gemma"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, (10000.0, "default", None)),
        # transformers 4 spelling (Gemma 3 4B): rope_theta, rope_scaling, rope_local_base_freq
        (
            {
                "rope_theta": 1e6,
                "rope_scaling": {"rope_type": "linear", "factor": 8.0},
                "rope_local_base_freq": 1e4,
            },
            (1e6, "linear", 1e4),
        ),
        ({"rope_theta": 5e5, "rope_scaling": {"type": "yarn", "factor": 4.0}}, (5e5, "yarn", None)),
        # transformers 5 spelling, per layer type
        (
            {
                "rope_parameters": {
                    "full_attention": {"rope_type": "default", "rope_theta": 1e6},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                }
            },
            (1e6, "default", 1e4),
        ),
    ],
)
def test_rope_settings_read_both_config_spellings(
    config: dict[str, Any], expected: tuple[float, str, float | None]
) -> None:
    rope = rope_settings(config)
    assert (rope.theta, rope.kind, rope.local_theta) == expected
