"""A quick quality figure for a model file: its perplexity on a short English text.

Method (llama.cpp's ``llama-perplexity``, scaled down): the text is tokenized once and cut into
chunks of ``context - 1`` tokens; each chunk is evaluated on its own, with BOS in front, in a
fresh context, and the model's log-probability of every token in the chunk's second half is
summed (the first half is there only as context, so every scored token sees at least half a
window). Perplexity is ``exp(-mean log-probability)``: lower is better; comparing a model before
and after quantization on the same text and context shows what the quantization cost.

The default text (``hearth/data/perplexity_sample.txt``, about 2.8 KB of plain prose written for
Hearth) is short, so figures are only comparable between runs of this function, not with
published wikitext numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from hearth.errors import ModelLoadError, ValidationError
from hearth.store.quantize import silence_llama_log

DEFAULT_CONTEXT = 256
SAMPLE_TEXT = "perplexity_sample.txt"


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    tokens_scored: int
    chunks: int


def sample_text() -> str:
    """The prose Hearth ships for quick perplexity figures."""
    return (resources.files("hearth") / "data" / SAMPLE_TEXT).read_text(encoding="utf-8")


def perplexity(
    model: Path, text: str | None = None, *, context: int = DEFAULT_CONTEXT, threads: int = 2
) -> PerplexityResult:
    """Perplexity of the GGUF ``model`` on ``text`` (default: :func:`sample_text`)."""
    if context < 8:
        raise ValidationError("context", context, "must be at least 8 tokens")
    from llama_cpp import Llama  # only here: loading llama.cpp is slow and not always needed

    silence_llama_log()
    try:
        llm = Llama(
            model_path=str(model),
            n_ctx=context,
            n_batch=context,
            n_ubatch=context,
            n_threads=threads,
            logits_all=True,
            verbose=False,
        )
    except ValueError as error:  # llama-cpp-python's way of saying the load failed
        raise ModelLoadError(f"llama.cpp cannot load {model}: {error}") from None
    try:
        tokens = llm.tokenize((text or sample_text()).encode(), add_bos=False, special=False)
        chunks = [tokens[i : i + context - 1] for i in range(0, len(tokens), context - 1)]
        chunks = [chunk for chunk in chunks if len(chunk) >= 2]
        if not chunks:
            raise ValidationError("text", text, "is too short to measure perplexity on")
        total, scored = 0.0, 0
        for chunk in chunks:
            llm.reset()  # type: ignore[no-untyped-call]
            llm.eval([llm.token_bos(), *chunk])
            log_probs = _chunk_log_probs(np.asarray(llm.scores[: len(chunk)]), chunk)
            total += float(log_probs.sum())
            scored += log_probs.size
    finally:
        llm.close()
    return PerplexityResult(math.exp(-total / scored), scored, len(chunks))


def _chunk_log_probs(logits: np.ndarray, chunk: list[int]) -> np.ndarray:
    """Log-probabilities of the second half of ``chunk``; row i of ``logits`` follows the BOS
    and the first i tokens, so it predicts ``chunk[i]``."""
    first = len(chunk) // 2
    rows = logits[first:]
    targets = np.asarray(chunk[first:])
    peak = rows.max(axis=1).astype(np.float64)
    # exp in float32 (a 262k-token vocabulary makes float64 copies slow), summed in float64
    sums = np.exp(rows - peak[:, None].astype(np.float32)).sum(axis=1, dtype=np.float64)
    log_norm = peak + np.log(sums)
    chosen: np.ndarray = rows[np.arange(len(targets)), targets] - log_norm
    return chosen
