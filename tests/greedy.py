"""Comparing greedy outputs across batch compositions, honestly.

llama.cpp's CPU kernels are not batch-invariant: the same prompt decoded alone or beside other
sequences gets logits that differ slightly (measured on Gemma 3 270M Q4_K_M: log-probabilities
up to about 0.1 apart; on the random tiny model about 1e-3). Where the two most likely tokens are
closer than that, the greedy choice may flip, and from there on the texts differ for reasons
that are not Hearth's. So tests compare every token up to the first such close call exactly.
"""

from __future__ import annotations

from hearth.engine.engine import Generation


def decided_tokens(generation: Generation, margin: float) -> list[int]:
    """Greedy tokens up to (not including) the first whose top-2 logprob gap is under ``margin``.

    The generation must have been submitted with ``logprobs`` >= 2."""
    generation.text()
    tokens = []
    for entry in generation.request.logprobs:
        if len(entry.top) < 2:
            raise ValueError("submit with logprobs >= 2 to compare greedy outputs")
        if entry.top[0][1] - entry.top[1][1] < margin:
            break
        tokens.append(entry.token)
    return tokens


def tokens_of(generation: Generation) -> list[int]:
    generation.text()
    return generation.request.output_tokens
