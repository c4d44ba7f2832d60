"""A causal LM's tokenizer (``tokenizer.json``) → llama.cpp's vocabulary keys.

Two kinds of ``tokenizer.json`` BPE model are read, the two llama.cpp has tokenizers for:

- byte-level BPE (GPT-2 style: Llama 3, Qwen 2/3): tokenizer model ``gpt2``, the tokens as they
  are, the merges, and ``tokenizer.ggml.pre``, the name of the pre-tokenizer llama.cpp must apply
  before merging. llama.cpp's own converter finds that name by hashing the tokenization of a test
  string with ``transformers``; Hearth reads the pre-tokenizer's split regex from the file
  instead and knows the regexes of the pre-tokenizers below (:data:`PRE_TOKENIZERS`). An unknown
  regex is refused: merging after a different split gives different tokens, silently.
- BPE with byte fallback (the SentencePiece models as Hugging Face saves them: Llama 2, Mistral,
  Gemma, Phi-3): tokenizer model ``llama``. llama.cpp's SentencePiece tokenizer merges the
  adjacent pair whose result has the highest *score*; Hugging Face's BPE merges the pair with the
  lowest *rank*. A token's score is therefore minus the rank of the first merge that makes it,
  which orders merges the same way (exactly so for files converted from SentencePiece, whose
  merges are listed in score order). ``tokenizer.model`` is not read: it needs the
  ``sentencepiece`` package, and every current model ships the same vocabulary as JSON.

Special token ids, ``add_bos``/``add_eos`` and the chat template come from gguf-py's
``SpecialVocab`` (``tokenizer_config.json``, ``chat_template.jinja``, ``config.json``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from hearth.convert.hf_folder import read_json
from hearth.errors import ConversionError

SPACE_MARK = "\u2581"  # SentencePiece's visible space

# Split regexes (tokenizer.json, pre_tokenizer) → the llama.cpp pre-tokenizer that applies it.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT2_BYTE_LEVEL = "<ByteLevel use_regex>"  # GPT-2's own pattern, built into ByteLevel
PRE_TOKENIZERS: Mapping[str, str] = {
    LLAMA3_SPLIT: "llama-bpe",
    QWEN2_SPLIT: "qwen2",
    GPT2_BYTE_LEVEL: "gpt-2",
}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass
class Vocab:
    model: str  # tokenizer.ggml.model: "gpt2" or "llama"
    pre: str  # tokenizer.ggml.pre
    tokens: list[str]
    types: list[gguf.TokenType]
    scores: list[float] | None = None  # "llama" only
    add_space_prefix: bool = False  # "llama" only: a leading "▁" before the first word
    special: gguf.SpecialVocab | None = field(default=None, repr=False)


def read_vocab(root: Path, embedding_rows: int) -> Vocab:
    """The folder's vocabulary, padded with unused tokens to the embedding's row count."""
    tokenizer = read_json(root / "tokenizer.json", required=False)
    if not tokenizer:
        raise ConversionError(
            f"{root} has no tokenizer.json; Hearth converts a causal LM's tokenizer from "
            "tokenizer.json (tokenizer.model alone is not supported)"
        )
    model = tokenizer.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise ConversionError(
            f"{root}/tokenizer.json is a {kind} tokenizer; Hearth converts BPE tokenizers "
            "(byte-level, or with byte fallback)"
        )
    tokens, added = _tokens_by_id(root, model, tokenizer.get("added_tokens", []))
    if len(tokens) > embedding_rows:
        raise ConversionError(
            f"{root}: the tokenizer has {len(tokens)} tokens, the model's embedding "
            f"{embedding_rows} rows"
        )
    if model.get("byte_fallback"):
        vocab = _sentencepiece_vocab(tokenizer, model, tokens, added)
    else:
        vocab = _byte_level_vocab(root, tokenizer, tokens, added)
    _pad(vocab, embedding_rows)
    vocab.special = _special_vocab(root, vocab)
    return vocab


def add_vocab(writer: gguf.GGUFWriter, vocab: Vocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types([int(kind) for kind in vocab.types])
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
        writer.add_add_space_prefix(vocab.add_space_prefix)
    special = vocab.special
    if special is None:
        return
    # What the Hugging Face tokenizer adds by itself; written either way so that llama.cpp's
    # per-model defaults never decide.
    special.add_special_token.setdefault("bos", False)
    special.add_special_token.setdefault("eos", False)
    special.add_to_gguf(writer, quiet=True)


def _tokens_by_id(
    root: Path, model: Mapping[str, Any], added_tokens: Any
) -> tuple[list[str], dict[int, bool]]:
    """Tokens by id (vocabulary and added tokens), and the added tokens' ids → special."""
    by_id: dict[int, str] = {}
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ConversionError(f"{root}/tokenizer.json has no vocabulary")
    for token, index in vocab.items():
        by_id[int(index)] = token
    added: dict[int, bool] = {}
    for entry in added_tokens if isinstance(added_tokens, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("content"), str) and "id" in entry:
            by_id[int(entry["id"])] = entry["content"]
            added[int(entry["id"])] = bool(entry.get("special", False))
    count = max(by_id) + 1 if by_id else 0
    if min(by_id, default=0) < 0:
        raise ConversionError(f"{root}/tokenizer.json has a negative token id")
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(count)]
    return tokens, added


def _byte_level_vocab(
    root: Path, tokenizer: Mapping[str, Any], tokens: list[str], added: Mapping[int, bool]
) -> Vocab:
    pre = _pre_tokenizer_name(root, tokenizer.get("pre_tokenizer"))
    types = [_token_type(i, added) for i in range(len(tokens))]
    return Vocab(model="gpt2", pre=pre, tokens=tokens, types=types)


def _sentencepiece_vocab(
    tokenizer: Mapping[str, Any],
    model: Mapping[str, Any],
    tokens: list[str],
    added: Mapping[int, bool],
) -> Vocab:
    ranks = _merge_ranks(model.get("merges") or [])
    unk = model.get("unk_token")
    types = []
    scores = []
    for index, token in enumerate(tokens):
        if index in added:
            types.append(_token_type(index, added))
        elif token == unk:
            types.append(gguf.TokenType.UNKNOWN)
        elif _BYTE_TOKEN.fullmatch(token):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
        # Tokens no merge makes (single characters, bytes, specials) are never merge results.
        scores.append(-float(ranks[token]) if token in ranks else 0.0)
    return Vocab(
        model="llama",
        pre="default",
        tokens=tokens,
        types=types,
        scores=scores,
        add_space_prefix=_prepends_space(tokenizer),
    )


def _merge_ranks(merges: Sequence[Any]) -> dict[str, int]:
    """Each merged token → the rank of the first merge that makes it."""
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ranks.setdefault(left + right, rank)
    return ranks


def _prepends_space(tokenizer: Mapping[str, Any]) -> bool:
    """Whether the tokenizer puts '▁' before the text (Llama 2 does; Gemma does not)."""
    for step in _steps(tokenizer.get("normalizer")):
        if step.get("type") == "Prepend" and step.get("prepend") == SPACE_MARK:
            return True
    for step in _steps(tokenizer.get("pre_tokenizer")):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never" and bool(
                step.get("add_prefix_space", True)
            )
    return False


def _pre_tokenizer_name(root: Path, pre_tokenizer: Any) -> str:
    steps = _steps(pre_tokenizer)
    splits = [
        step.get("pattern", {}).get("Regex")
        for step in steps
        if step.get("type") == "Split" and isinstance(step.get("pattern"), dict)
    ]
    byte_level = [step for step in steps if step.get("type") == "ByteLevel"]
    if not splits and byte_level and byte_level[0].get("use_regex", True):
        key = GPT2_BYTE_LEVEL
    elif len(splits) == 1 and isinstance(splits[0], str):
        key = splits[0]
    else:
        key = ""
    if key not in PRE_TOKENIZERS or not byte_level:
        raise ConversionError(
            f"{root}/tokenizer.json: its pre-tokenizer is not one llama.cpp is known to apply "
            f"the same way (Hearth knows {', '.join(sorted(PRE_TOKENIZERS.values()))}); "
            "converting it would give different tokens"
        )
    return PRE_TOKENIZERS[key]


def _steps(component: Any) -> list[dict[str, Any]]:
    """A normalizer's or pre-tokenizer's steps (a Sequence flattened; one step as a list)."""
    if not isinstance(component, dict):
        return []
    inner = component.get("normalizers", component.get("pretokenizers"))
    if component.get("type") == "Sequence" and isinstance(inner, list):
        return [step for step in inner if isinstance(step, dict)]
    return [component]


def _token_type(index: int, added: Mapping[int, bool]) -> gguf.TokenType:
    if index not in added:
        return gguf.TokenType.NORMAL
    return gguf.TokenType.CONTROL if added[index] else gguf.TokenType.USER_DEFINED


def _pad(vocab: Vocab, rows: int) -> None:
    """Rows of the embedding no token uses (vocabularies are often padded to a multiple of 64)."""
    for index in range(len(vocab.tokens), rows):
        vocab.tokens.append(f"[PAD{index}]")
        vocab.types.append(gguf.TokenType.UNUSED)
        if vocab.scores is not None:
            vocab.scores.append(0.0)
    for index, token in enumerate(vocab.tokens):  # gaps in the ids
        if token == f"[PAD{index}]":
            vocab.types[index] = gguf.TokenType.UNUSED


def _special_vocab(root: Path, vocab: Vocab) -> gguf.SpecialVocab:
    try:
        return gguf.SpecialVocab(root, load_merges=vocab.model == "gpt2", n_vocab=len(vocab.tokens))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ConversionError(f"{root}: cannot read the tokenizer's settings: {error}") from None
