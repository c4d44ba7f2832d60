"""Sentence embeddings with llama.cpp. This module and runner.py are the ones that import llama_cpp.

An :class:`Embedder` owns one model and one context in embedding mode, pooling as the model says
(mean for all-MiniLM-L6-v2). ``embed`` tokenizes every text first (so a bad input fails before
any work), packs as many texts as fit into one ``llama_batch`` (one ``seq_id`` each, every token
an output so llama.cpp can pool), runs it, reads each sequence's pooled vector with
``llama_get_embeddings_seq``, and L2-normalises it. Encoder-only models (BERT) have no KV memory
and run with ``llama_encode``; a decoder model in embedding mode runs with ``llama_decode``, its
memory cleared before every batch. Calls from several threads are safe but serialised by a lock:
one context computes one batch at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import llama_cpp
import numpy as np

from hearth.engine.runner import (
    DECODE_LOCK,
    BatchWriter,
    LlamaTokenizer,
    _init_backend,
    _load_model,
)
from hearth.errors import ContextOverflowError, EngineError, ModelLoadError, ValidationError

MAX_SEQS = 256  # llama.cpp's LLAMA_MAX_SEQ (the bindings do not export it)


class Pooling(Enum):
    """How token vectors become one vector per text; MODEL means what the GGUF says."""

    MODEL = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
    MEAN = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    CLS = llama_cpp.LLAMA_POOLING_TYPE_CLS
    LAST = llama_cpp.LLAMA_POOLING_TYPE_LAST
    RANK = llama_cpp.LLAMA_POOLING_TYPE_RANK  # a cross-encoder: one score per pair of texts


@dataclass(frozen=True)
class EmbedderConfig:
    max_seqs: int = 16  # texts in one batch at most
    batch_tokens: int = 2048  # tokens in one batch at most; also caps one text's length
    n_threads: int = 0  # 0: one per CPU core
    pooling: Pooling = Pooling.MODEL
    llama_log: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.max_seqs <= MAX_SEQS:
            raise ValidationError("max_seqs", self.max_seqs, f"must be 1..{MAX_SEQS}")
        if self.batch_tokens < 1:
            raise ValidationError("batch_tokens", self.batch_tokens, "must be at least 1")
        if self.n_threads < 0:
            raise ValidationError("n_threads", self.n_threads, "must not be negative")


class Embedder:
    def __init__(self, model_path: Path, config: EmbedderConfig | None = None) -> None:
        self.config = config or EmbedderConfig()
        _init_backend(self.config.llama_log)
        self._model = _load_model(model_path)
        self._closed = False
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self._model)
        # A text's tokens go into one batch, and its positions must exist in the model.
        self.max_tokens = min(
            self.n_ctx_train or self.config.batch_tokens, self.config.batch_tokens
        )
        self._ctx = _embedding_context(self._model, self.config)
        self._memory = llama_cpp.llama_get_memory(self._ctx)  # None for encoder-only models
        self._batch = llama_cpp.llama_batch_init(self.config.batch_tokens, 0, 1)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.tokenizer = LlamaTokenizer(self._vocab)
        self._lock = threading.Lock()
        self._check_pooling(model_path)
        self.ranks = llama_cpp.llama_pooling_type(self._ctx) == Pooling.RANK.value
        # A reranker's pooled output is its classifier's scores, not a vector.
        self.dimensions: int = (
            llama_cpp.llama_model_n_cls_out(self._model)
            if self.ranks
            else llama_cpp.llama_model_n_embd_out(self._model)
        )

    # -- public ---------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, normalize: bool = True) -> list[list[float]]:
        """One vector per text, in order; unit length unless ``normalize`` is False."""
        if isinstance(texts, str):
            raise ValidationError("input", texts, "expected a list of texts, not one string")
        if self.ranks:
            raise ValidationError("model", "…", "is a reranker: it scores pairs, use rerank")
        with self._lock:
            self._check_open()
            tokenized = [self._tokenize(i, text) for i, text in enumerate(texts)]
            vectors: list[np.ndarray[Any, Any]] = []
            for group in self._groups(tokenized):
                vectors += self._embed_batch(group)
        return [(_unit(v) if normalize else v).tolist() for v in vectors]

    def rank(self, query: str, documents: Sequence[str]) -> list[float]:
        """A reranker's score for each document against ``query`` (its first output label).
        Each pair is written as llama.cpp's server does: ``[CLS] query [SEP] document [SEP]``
        for BERT (the query with the special tokens, the document then the separator)."""
        if not self.ranks:
            raise ValidationError("model", "…", "is not a reranker (no rank pooling)")
        with self._lock:
            self._check_open()
            query_tokens = self._query_tokens(query)
            pairs = [
                self._pair(query_tokens, index, document)
                for index, document in enumerate(documents)
            ]
            scores: list[float] = []
            for group in self._groups(pairs):
                scores += [float(output[0]) for output in self._embed_batch(group)]
        return scores

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes, special tokens included (the limit is max_tokens)."""
        with self._lock:
            self._check_open()  # the vocabulary belongs to the model, freed by close()
            return len(self.tokenizer.tokenize(text, add_special=True))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            llama_cpp.llama_model_free(self._model)

    def __enter__(self) -> Embedder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _check_pooling(self, model_path: Path) -> None:
        pooling = llama_cpp.llama_pooling_type(self._ctx)
        if pooling in (Pooling.MEAN.value, Pooling.CLS.value, Pooling.LAST.value):
            return
        if pooling == Pooling.RANK.value and llama_cpp.llama_model_n_cls_out(self._model) > 0:
            return
        self.close()
        what = "no pooling type" if pooling == llama_cpp.LLAMA_POOLING_TYPE_NONE else "rank pooling"
        raise ModelLoadError(
            f"{model_path} declares {what}, so it gives no vector per text; "
            "choose one with EmbedderConfig(pooling=...)"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("the embedder is closed")

    def _tokenize(self, index: int, text: str) -> list[int]:
        if not text:
            raise ValidationError(f"input[{index}]", text, "the text is empty")
        tokens = self.tokenizer.tokenize(text, add_special=True)
        if len(tokens) > self.max_tokens:
            raise ContextOverflowError(
                f"input[{index}] is {len(tokens)} tokens long; "
                f"this model embeds at most {self.max_tokens} tokens per text"
            )
        return tokens

    def _query_tokens(self, query: str) -> list[int]:
        if not query:
            raise ValidationError("query", query, "the text is empty")
        return self.tokenizer.tokenize(query, add_special=True)

    def _pair(self, query_tokens: list[int], index: int, document: str) -> list[int]:
        if not document:
            raise ValidationError(f"documents[{index}]", document, "the text is empty")
        tokens = self.tokenizer.tokenize(document, add_special=False)
        pair = query_tokens + tokens + [llama_cpp.llama_vocab_sep(self._vocab)]
        if len(pair) > self.max_tokens:
            raise ContextOverflowError(
                f"documents[{index}] with the query is {len(pair)} tokens long; "
                f"this model reads at most {self.max_tokens} tokens per pair"
            )
        return pair

    def _groups(self, tokenized: list[list[int]]) -> Iterator[list[list[int]]]:
        """Consecutive texts, as many as fit in one batch (tokens and sequences)."""
        group: list[list[int]] = []
        used = 0
        for tokens in tokenized:
            full = len(group) == self.config.max_seqs
            if group and (full or used + len(tokens) > self.config.batch_tokens):
                yield group
                group, used = [], 0
            group.append(tokens)
            used += len(tokens)
        if group:
            yield group

    def _embed_batch(self, sequences: list[list[int]]) -> list[np.ndarray[Any, Any]]:
        self._fill_batch(sequences)
        # One llama.cpp compute at a time in the process: see runner.DECODE_LOCK.
        with DECODE_LOCK:
            if self._memory is not None:
                # A decoder keeps KV cells per sequence id; the previous batch's must not leak.
                llama_cpp.llama_memory_clear(self._memory, True)
                status = llama_cpp.llama_decode(self._ctx, self._batch)
            else:
                status = llama_cpp.llama_encode(self._ctx, self._batch)
        if status != 0:
            raise EngineError(f"llama.cpp failed to embed a batch (status {status})")
        return [self._pooled(seq_id) for seq_id in range(len(sequences))]

    def _fill_batch(self, sequences: list[list[int]]) -> None:
        writer = BatchWriter(self._batch)
        for seq_id, tokens in enumerate(sequences):
            writer.add(tokens, 0, seq_id, outputs=True)  # pooling reads every token's output
        writer.close()

    def _pooled(self, seq_id: int) -> np.ndarray[Any, Any]:
        pointer = llama_cpp.llama_get_embeddings_seq(self._ctx, seq_id)
        if not pointer:
            raise EngineError(f"llama.cpp returned no embedding for sequence {seq_id}")
        return np.ctypeslib.as_array(pointer, shape=(self.dimensions,)).astype(np.float64)


def _unit(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _embedding_context(
    model: llama_cpp.llama_model_p, config: EmbedderConfig
) -> llama_cpp.llama_context_p:
    params = llama_cpp.llama_context_default_params()
    # An encoder sees a whole batch at once: the physical batch must hold all of it. Rounded up
    # to a multiple of n_seq_max: otherwise llama.cpp (0.3.36) aborts the process (an assert in
    # ggml_mul_mat) while reserving its mean-pooling graph, e.g. 64 tokens with 3 sequences.
    n_tokens = -(-config.batch_tokens // config.max_seqs) * config.max_seqs
    params.n_ctx = n_tokens
    params.n_batch = n_tokens
    params.n_ubatch = n_tokens
    params.n_seq_max = config.max_seqs
    threads = config.n_threads or (os.cpu_count() or 1)
    params.n_threads = threads
    params.n_threads_batch = threads
    params.embeddings = True
    params.pooling_type = config.pooling.value
    params.kv_unified = True  # a decoder model's sequences share one pool of cells
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        llama_cpp.llama_model_free(model)
        raise ModelLoadError("llama.cpp could not create an embedding context for the model")
    return cast("llama_cpp.llama_context_p", ctx)
