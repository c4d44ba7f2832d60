"""BERT (``BertModel``) → llama.cpp's ``bert`` architecture.

Three things change form on the way: the hyperparameters (``config.json`` keys → ``bert.*``
GGUF keys), the WordPiece vocabulary (into the "phantom space" spelling llama.cpp's WPM tokenizer
matches against, see :func:`phantom_space`), and the tensor names (through gguf-py's own
name map for the architecture). The pooler and masked-LM heads are dropped: an embedding model
pools in llama.cpp, by the pooling type written here. A cross-encoder
(``BertForSequenceClassification``, a reranker) keeps its pooler and classifier as llama.cpp's
``cls`` and ``cls.output`` tensors and gets rank pooling: llama.cpp then scores a pair of texts
through the [CLS] token's vector, tanh(pooler), then the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hearth.convert.hf_folder import HFFolder, SourceTensor, read_json, sentence_pooling
from hearth.errors import ConversionError

ARCHITECTURES = ("BertModel", "BertForSequenceClassification")
CLASSIFIER = "BertForSequenceClassification"
GGUF_ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT]
PHANTOM_SPACE = "\u2581"  # what llama.cpp's WPM tokenizer puts before each word
_SPECIAL_NAMES = ("cls", "sep", "pad", "unk", "mask")
_SKIPPED_PREFIXES = ("pooler.", "cls.")  # HF's pooler and MLM heads: llama.cpp pools itself
_SKIPPED_NAMES = frozenset({"embeddings.position_ids"})  # a buffer, not a weight
# Added to activations as they are, not multiplied: llama.cpp's own converter keeps them F32.
_F32_TENSORS = frozenset(
    gguf.TENSOR_NAMES[kind] + ".weight"
    for kind in (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)
)
_POOLING = {
    "mean": gguf.PoolingType.MEAN,
    "cls": gguf.PoolingType.CLS,
    "last": gguf.PoolingType.LAST,
}


@dataclass(frozen=True)
class BertParams:
    context_length: int
    embedding_length: int
    feed_forward_length: int
    block_count: int
    head_count: int
    layer_norm_eps: float
    vocab_size: int
    token_type_count: int


@dataclass(frozen=True)
class WordPieceVocab:
    tokens: list[str]  # as Hugging Face spells them ("##ing" continues a word)
    types: list[gguf.TokenType]
    special: Mapping[str, int]  # cls, sep, unk, and pad and mask when the vocabulary has them


class BertConversion:
    """What to write for one BERT folder: metadata, and a GGUF name for each tensor."""

    gguf_arch = GGUF_ARCH

    def __init__(self, folder: HFFolder) -> None:
        self.params = bert_params(folder.config)
        self.vocab = read_wordpiece_vocab(folder.root, self.params.vocab_size)
        self.classifier = folder.architecture == CLASSIFIER
        self.labels = _labels(folder.config) if self.classifier else []
        self.pooling = gguf.PoolingType.RANK if self.classifier else _pooling(folder.root)
        self._names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, self.params.block_count)

    def add_metadata(self, writer: gguf.GGUFWriter) -> None:
        params = self.params
        writer.add_context_length(params.context_length)
        writer.add_embedding_length(params.embedding_length)
        writer.add_feed_forward_length(params.feed_forward_length)
        writer.add_block_count(params.block_count)
        writer.add_head_count(params.head_count)
        writer.add_layer_norm_eps(params.layer_norm_eps)
        writer.add_causal_attention(False)
        writer.add_pooling_type(self.pooling)
        if self.labels:
            writer.add_classifier_output_labels(self.labels)
        add_vocab(writer, self.vocab, params.token_type_count)

    def tensor_name(self, tensor: SourceTensor) -> str | None:
        """The GGUF name for ``tensor``, or None for a tensor llama.cpp does not use."""
        name = _normalise_name(tensor.name)
        if self.classifier:
            head = _classifier_head_name(name)
            if head is not None:
                return head
        if name in _SKIPPED_NAMES or name.startswith(_SKIPPED_PREFIXES):
            return None
        mapped = self._names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ConversionError(
                f"tensor {tensor.name} has no place in llama.cpp's {GGUF_ARCH} architecture"
            )
        return str(mapped)

    def keep_f32(self, gguf_name: str, shape: tuple[int, ...]) -> bool:
        """Norms, biases and the added embeddings stay F32 whatever the output type."""
        return len(shape) < 2 or gguf_name in _F32_TENSORS

    def transform(self, gguf_name: str, data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return data  # BERT's weights are stored as llama.cpp uses them

    def extra_tensors(self) -> list[tuple[str, np.ndarray[Any, Any]]]:
        return []


def bert_params(config: Mapping[str, Any]) -> BertParams:
    _require_value(config, "hidden_act", ("gelu",))  # llama.cpp's bert graph uses GELU
    _require_value(config, "position_embedding_type", ("absolute",))
    return BertParams(
        context_length=_int(config, "max_position_embeddings"),
        embedding_length=_int(config, "hidden_size"),
        feed_forward_length=_int(config, "intermediate_size"),
        block_count=_int(config, "num_hidden_layers"),
        head_count=_int(config, "num_attention_heads"),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        vocab_size=_int(config, "vocab_size"),
        token_type_count=int(config.get("type_vocab_size", 2)),
    )


def add_vocab(writer: gguf.GGUFWriter, vocab: WordPieceVocab, token_type_count: int) -> None:
    writer.add_tokenizer_model("bert")  # llama.cpp's WordPiece (WPM) tokenizer
    writer.add_tokenizer_pre("default")
    writer.add_token_list(
        [phantom_space(t, k) for t, k in zip(vocab.tokens, vocab.types, strict=True)]
    )
    writer.add_token_types([int(kind) for kind in vocab.types])
    writer.add_token_type_count(token_type_count)
    special = vocab.special
    # llama.cpp calls the token it puts first BOS and the one it ends with SEP (and EOS).
    writer.add_bos_token_id(special["cls"])
    writer.add_eos_token_id(special["sep"])
    writer.add_sep_token_id(special["sep"])
    writer.add_unk_token_id(special["unk"])
    if "pad" in special:
        writer.add_pad_token_id(special["pad"])
    if "mask" in special:
        writer.add_mask_token_id(special["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)


def phantom_space(token: str, kind: gguf.TokenType) -> str:
    """WordPiece spelling → llama.cpp's: a word start gains '▁', a '##' continuation loses it."""
    if kind == gguf.TokenType.CONTROL:
        return token
    if token.startswith("##"):
        return token[2:]
    return PHANTOM_SPACE + token


def read_wordpiece_vocab(root: Path, vocab_size: int) -> WordPieceVocab:
    """The vocabulary from tokenizer.json, else vocab.txt, padded to the embedding's row count."""
    tokenizer = read_json(root / "tokenizer.json", required=False)
    settings = {
        **read_json(root / "special_tokens_map.json", required=False),
        **read_json(root / "tokenizer_config.json", required=False),
    }
    _require_uncased(root, tokenizer, settings)
    tokens, added = _tokens_and_added(root, tokenizer)
    if len(tokens) > vocab_size:
        raise ConversionError(
            f"{root}: the tokenizer has {len(tokens)} tokens, the model's embedding {vocab_size}"
        )
    special = _special_ids(root, tokens, settings)
    types = [_token_type(i, special, added) for i in range(len(tokens))]
    for i in range(len(tokens), vocab_size):  # rows the tokenizer never produces
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    return WordPieceVocab(tokens, types, special)


def _tokens_and_added(
    root: Path, tokenizer: Mapping[str, Any]
) -> tuple[list[str], dict[int, bool]]:
    """Tokens by id, and the added tokens' ids → whether each is special."""
    added = {
        int(entry["id"]): bool(entry.get("special", False))
        for entry in tokenizer.get("added_tokens", [])
        if isinstance(entry, dict) and "id" in entry
    }
    model = tokenizer.get("model")
    if isinstance(model, dict):
        if model.get("type") != "WordPiece":
            raise ConversionError(
                f"{root}/tokenizer.json is a {model.get('type')} tokenizer, not WordPiece"
            )
        return _by_id(root, model.get("vocab", {})), added
    try:
        lines = (root / "vocab.txt").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConversionError(f"{root} has neither tokenizer.json nor vocab.txt") from None
    return [line.rstrip("\r") for line in lines], added


def _by_id(root: Path, vocab: Mapping[str, int]) -> list[str]:
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        if not 0 <= index < len(tokens) or tokens[index]:
            raise ConversionError(
                f"{root}/tokenizer.json: token ids are not 0..{len(vocab) - 1}, each once"
            )
        tokens[index] = token
    return tokens


def _special_ids(root: Path, tokens: list[str], settings: Mapping[str, Any]) -> dict[str, int]:
    ids = {token: index for index, token in enumerate(tokens)}
    special: dict[str, int] = {}
    for name in _SPECIAL_NAMES:
        value = settings.get(f"{name}_token", f"[{name.upper()}]")
        text = value.get("content") if isinstance(value, dict) else value
        if isinstance(text, str) and text in ids:
            special[name] = ids[text]
    missing = [name for name in ("cls", "sep", "unk") if name not in special]
    if missing:
        raise ConversionError(f"{root}: the vocabulary has no {', '.join(missing)} token")
    return special


def _token_type(
    index: int, special: Mapping[str, int], added: Mapping[int, bool]
) -> gguf.TokenType:
    if index in special.values() or added.get(index, False):
        return gguf.TokenType.CONTROL
    if index in added:
        return gguf.TokenType.USER_DEFINED
    return gguf.TokenType.NORMAL


def _require_uncased(root: Path, tokenizer: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    # llama.cpp's WPM tokenizer lowercases every input: a cased vocabulary would silently get
    # different tokens from the ones the model was trained on.
    normalizer = tokenizer.get("normalizer")
    if isinstance(normalizer, dict) and "lowercase" in normalizer:
        lowercase = bool(normalizer["lowercase"])
    else:
        lowercase = bool(settings.get("do_lower_case", True))
    if not lowercase:
        raise ConversionError(
            f"{root}: the tokenizer is cased, but llama.cpp's WordPiece tokenizer lowercases all "
            "text, so its tokens would differ from the model's; only uncased BERT is supported"
        )


def _pooling(root: Path) -> gguf.PoolingType:
    mode = sentence_pooling(root)
    if mode is None:
        return gguf.PoolingType.MEAN  # what sentence-transformers uses when it is not told
    if mode not in _POOLING:
        raise ConversionError(f"{root}: pooling mode {mode!r} is not supported by llama.cpp")
    return _POOLING[mode]


def _labels(config: Mapping[str, Any]) -> list[str]:
    """The classifier's output labels, in order (one for a reranker's single score)."""
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return [str(id2label.get(str(i), id2label.get(i, i))) for i in range(len(id2label))]
    return [
        f"LABEL_{i}" for i in range(_int(config, "num_labels") if "num_labels" in config else 1)
    ]


def _classifier_head_name(name: str) -> str | None:
    """A sequence classifier's pooler and classifier as llama.cpp's rank-pooling head."""
    cls = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.CLS]
    cls_out = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.CLS_OUT]
    for prefix, gguf_prefix in (("pooler.dense.", cls), ("classifier.", cls_out)):
        if name.startswith(prefix):
            return gguf_prefix + "." + name.removeprefix(prefix)
    return None


def _normalise_name(name: str) -> str:
    name = name.removeprefix("bert.")
    # Old TensorFlow-era checkpoints call LayerNorm's weight and bias gamma and beta.
    if name.endswith(".gamma"):
        return name.removesuffix(".gamma") + ".weight"
    if name.endswith(".beta"):
        return name.removesuffix(".beta") + ".bias"
    return name


def _int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConversionError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def _require_value(config: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    value = config.get(key, allowed[0])
    if value not in allowed:
        raise ConversionError(
            f"config.json: {key}={value!r} is not supported by llama.cpp's {GGUF_ARCH} "
            f"architecture (supported: {', '.join(allowed)})"
        )
