"""Tiny random BERT folders (as Hugging Face saves them) and the reference embeddings for them.

The reference is what sentence-transformers computes: the model's last hidden state, pooled over
the attention mask (mean) or taken at [CLS], then L2-normalised. Needs torch and transformers.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # not at BERT's usual ids 0, 100..103
WORDS = [
    "the", "cat", "dog", "sat", "ran", "on", "mat", "is", "a", "good", "day", "night",
    "happy", "house", "##s", "##ing", "##ed", "##ly", "cafe", "bar",
]  # fmt: skip
EXTRA_ROWS = 3  # embedding rows past the vocabulary, as real checkpoints often have
SAMPLE_TEXTS = [
    "the cat sat on the mat.",
    "A dog is running!",
    "Good night, happy house",
    "zebra quokka",
    "The Café bar",
    "a",
]


def tiny_vocab() -> list[str]:
    letters = list(string.ascii_lowercase)
    tokens = SPECIALS + letters + [f"##{c}" for c in letters] + list(".,!?'") + WORDS
    return list(dict.fromkeys(tokens))


def write_tiny_bert(
    root: Path,
    *,
    pooling: str = "mean",
    shard: bool = False,
    license: str | None = "mit",
    tokenizer_json: bool = True,
    seed: int = 0,
) -> Path:
    """A BertModel folder: config, safetensors, WordPiece tokenizer, pooling config, card."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True)
    vocab = tiny_vocab()
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    ids = {token: index for index, token in enumerate(vocab)}
    BertTokenizerFast(vocab=ids, do_lower_case=True).save_pretrained(root)
    if not tokenizer_json:  # an older folder: vocab.txt and tokenizer_config.json only
        (root / "tokenizer.json").unlink()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab) + EXTRA_ROWS,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        pad_token_id=0,
        initializer_range=0.5,  # BERT's 0.02 makes every text's vector nearly the same
    )
    model = BertModel(config).eval()
    model.save_pretrained(root, max_shard_size="40KB" if shard else "5GB")
    _write_pooling(root, pooling)
    front = f"license: {license}\n" if license else ""
    (root / "README.md").write_text(f"---\n{front}tags:\n- test\n---\n# tiny-bert\n")
    return root


def _write_pooling(root: Path, pooling: str) -> None:
    (root / "1_Pooling").mkdir()
    config = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
    }
    (root / "1_Pooling" / "config.json").write_text(json.dumps(config))


def reference_embeddings(
    model_dir: Path, texts: Sequence[str], *, pooling: str = "mean"
) -> tuple[np.ndarray, list[list[int]]]:
    """(unit vectors as transformers computes them, each text's token ids)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    encoded = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"]
    if pooling == "cls":
        vectors = hidden[:, 0]
    else:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        vectors = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
    vectors = torch.nn.functional.normalize(vectors, dim=1)
    ids = [
        [t for t, m in zip(row, row_mask, strict=True) if m]
        for row, row_mask in zip(encoded["input_ids"].tolist(), mask.tolist(), strict=True)
    ]
    return vectors.numpy().astype(np.float64), ids


def cosines(
    a: Sequence[Sequence[float]] | np.ndarray, b: Sequence[Sequence[float]] | np.ndarray
) -> list[float]:
    """Row-by-row cosine similarity."""
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    dots = (left * right).sum(axis=1)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return [float(x) for x in dots / norms]
