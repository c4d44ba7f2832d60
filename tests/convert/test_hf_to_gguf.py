"""The safetensors → GGUF converter on tiny random BERT folders, checked against transformers."""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from hearth.convert import SUPPORTED_ARCHITECTURES, OutType, convert_hf_to_gguf
from hearth.convert.hf_folder import card_license
from hearth.engine.embeddings import Embedder, EmbedderConfig
from hearth.errors import ConversionError
from tests.bert_helpers import (
    EXTRA_ROWS,
    SAMPLE_TEXTS,
    cosines,
    reference_embeddings,
    tiny_vocab,
    write_tiny_bert,
)

pytest.importorskip("transformers")


def fields(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("pooling", "tokenizer_json", "outtype"),
    [
        ("mean", True, OutType.F16),
        ("mean", True, OutType.F32),
        ("cls", False, OutType.F16),  # vocab.txt only, CLS pooling
    ],
)
def test_llama_cpp_matches_transformers(
    tmp_path: Path, pooling: str, tokenizer_json: bool, outtype: OutType
) -> None:
    folder = write_tiny_bert(tmp_path / "bert", pooling=pooling, tokenizer_json=tokenizer_json)
    gguf_path = convert_hf_to_gguf(folder, tmp_path / "bert.gguf", outtype=outtype).path
    expected, expected_ids = reference_embeddings(folder, SAMPLE_TEXTS, pooling=pooling)
    with Embedder(gguf_path, EmbedderConfig(n_threads=2)) as embedder:
        assert [embedder.tokenizer.tokenize(text) for text in SAMPLE_TEXTS] == expected_ids
        got = embedder.embed(SAMPLE_TEXTS)
    assert min(cosines(got, expected)) >= 0.999
    # The check means something: the texts' own vectors are far apart.
    assert float((expected[0] * expected[3]).sum()) < 0.95


def test_metadata_vocabulary_and_tensor_types(tiny_bert_dir: Path, tmp_path: Path) -> None:
    result = convert_hf_to_gguf(tiny_bert_dir, tmp_path / "out.gguf", name="tiny-bert-test")
    meta = fields(result.path)
    arch = "bert"
    assert (result.architecture, result.name, result.license) == (arch, "tiny-bert-test", "mit")
    assert meta["general.architecture"] == arch
    assert meta["general.name"] == "tiny-bert-test"
    assert meta["general.license"] == "mit"
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    expected_hparams = {
        "context_length": 64,
        "embedding_length": 32,
        "feed_forward_length": 64,
        "block_count": 2,
        "attention.head_count": 4,
        "attention.causal": False,
        "pooling_type": gguf.PoolingType.MEAN,
    }
    for key, value in expected_hparams.items():
        assert meta[f"{arch}.{key}"] == value, key
    assert meta[f"{arch}.attention.layer_norm_epsilon"] == pytest.approx(1e-12)

    vocab = tiny_vocab()
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    assert meta["tokenizer.ggml.model"] == "bert"
    assert meta["tokenizer.ggml.token_type_count"] == 2
    assert len(tokens) == len(vocab) + EXTRA_ROWS
    assert tokens[vocab.index("[CLS]")] == "[CLS]"  # control tokens keep their spelling
    assert tokens[vocab.index("cat")] == "\u2581cat"  # a word start gains the phantom space
    assert tokens[vocab.index("##ing")] == "ing"  # a continuation loses its ##
    assert types[vocab.index("[MASK]")] == gguf.TokenType.CONTROL
    assert types[vocab.index("cat")] == gguf.TokenType.NORMAL
    assert types[-1] == gguf.TokenType.UNUSED
    keys = gguf.Keys.Tokenizer
    special = {
        keys.BOS_ID: "[CLS]",  # llama.cpp puts its BOS first: BERT's [CLS]
        keys.EOS_ID: "[SEP]",
        keys.SEP_ID: "[SEP]",
        keys.UNK_ID: "[UNK]",
        keys.PAD_ID: "[PAD]",
        keys.MASK_ID: "[MASK]",
    }
    for key, token in special.items():
        assert meta[key] == vocab.index(token), key

    types_by_name = tensor_types(result.path)
    assert result.tensor_count == len(types_by_name) == 5 + 2 * 16
    assert not any("pooler" in name for name in types_by_name)
    assert types_by_name["token_embd.weight"] == "F16"
    assert types_by_name["blk.0.attn_q.weight"] == "F16"
    assert types_by_name["position_embd.weight"] == "F32"
    assert types_by_name["token_types.weight"] == "F32"
    assert types_by_name["blk.1.layer_output_norm.weight"] == "F32"
    assert types_by_name["blk.1.ffn_up.bias"] == "F32"


def test_sharded_folder_gives_the_same_model(tmp_path: Path) -> None:
    single = write_tiny_bert(tmp_path / "single", seed=3)
    sharded = write_tiny_bert(tmp_path / "sharded", seed=3, shard=True)
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    a = gguf.GGUFReader(convert_hf_to_gguf(single, tmp_path / "a.gguf").path)
    b = gguf.GGUFReader(convert_hf_to_gguf(sharded, tmp_path / "b.gguf").path)
    a_tensors = {t.name: np.array(t.data) for t in a.tensors}
    b_tensors = {t.name: np.array(t.data) for t in b.tensors}
    assert a_tensors.keys() == b_tensors.keys()
    for name, data in a_tensors.items():
        assert np.array_equal(data, b_tensors[name]), name


def test_progress_reports_bytes_after_each_tensor(tiny_bert_dir: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = convert_hf_to_gguf(
        tiny_bert_dir, tmp_path / "out.gguf", progress=lambda d, t: seen.append((d, t))
    )
    assert len(seen) == result.tensor_count
    total = seen[-1][1]
    assert seen[-1] == (total, total)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(seen))
    assert total is not None and total < result.path.stat().st_size


def test_interrupted_conversion_leaves_no_file(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(done: int, total: int | None) -> None:
        if done > 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_hf_to_gguf(tiny_bert_dir, out / "model.gguf", progress=interrupt)
    assert list(out.iterdir()) == []

    (out / "model.gguf").write_bytes(b"the previous model")
    with pytest.raises(KeyboardInterrupt):
        convert_hf_to_gguf(tiny_bert_dir, out / "model.gguf", progress=interrupt)
    assert [p.name for p in out.iterdir()] == ["model.gguf"]
    assert (out / "model.gguf").read_bytes() == b"the previous model"


class _Trap:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_pickle_only_folder_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_bert_dir / "config.json", folder)
    marker = tmp_path / "unpickled"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ConversionError, match=r"only as pickle files \(pytorch_model.bin\)"):
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()
    assert not marker.exists()


def test_pickle_beside_safetensors_is_never_opened(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(tiny_bert_dir, tmp_path / "both")
    marker = tmp_path / "unpickled"
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt"):
        (folder / name).write_bytes(pickle.dumps(_Trap(marker)))
    assert convert_hf_to_gguf(folder, tmp_path / "out.gguf").path.is_file()
    assert not marker.exists()


def test_unsupported_architecture_is_named(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_folder(tiny_bert_dir, tmp_path / "mamba")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["MambaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError) as caught:
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")
    message = str(caught.value)
    assert "architecture MambaForCausalLM is not supported" in message
    assert f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}" in message
    assert "BertModel" in SUPPORTED_ARCHITECTURES
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("escaping shard", "invalid shard: '../outside.safetensors'"),
        ("cased tokenizer", "the tokenizer is cased"),
        ("fp8 weights", "is F8_E4M3"),
        ("relu", "hidden_act='relu' is not supported"),
        ("max pooling", "pooling mode 'max' is not supported"),
        ("no config", "has no config.json"),
        ("no weights", "has no model.safetensors"),
    ],
)
def test_bad_folders_are_refused(
    tiny_bert_dir: Path, tmp_path: Path, change: str, message: str
) -> None:
    folder = copy_folder(tiny_bert_dir, tmp_path / "bad")
    _break(folder, change)
    with pytest.raises(ConversionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_hf_to_gguf(folder, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def _break(folder: Path, change: str) -> None:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if change == "escaping shard":
        index = {"weight_map": {"embeddings.word_embeddings.weight": "../outside.safetensors"}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    elif change == "cased tokenizer":
        (folder / "tokenizer.json").unlink()
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(
            json.dumps({**settings, "do_lower_case": False})
        )
    elif change == "fp8 weights":
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        save_file(
            {k: v.to(torch.float8_e4m3fn) for k, v in tensors.items()},
            folder / "model.safetensors",
        )
    elif change == "relu":
        config_path.write_text(json.dumps({**config, "hidden_act": "relu"}))
    elif change == "max pooling":
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"}))
    elif change == "no config":
        config_path.unlink()
    elif change == "no weights":
        (folder / "model.safetensors").unlink()


@pytest.mark.parametrize(
    ("card", "license_id"),
    [
        ("---\nlicense: apache-2.0\ntags:\n- x\n---\n# Model\n", "apache-2.0"),
        ("---\nlanguage: en\nlicense: 'mit'\n---\n", "mit"),
        ("---\nlicense: other\nlicense_name: acme-1.0\n---\n", "acme-1.0"),
        ("---\ntags:\n- license: nested-is-not-the-license\n---\n", None),
        ("# No front matter\nlicense: mit\n", None),
        ("", None),
    ],
)
def test_card_license(tmp_path: Path, card: str, license_id: str | None) -> None:
    (tmp_path / "README.md").write_text(card)
    assert card_license(tmp_path) == license_id
