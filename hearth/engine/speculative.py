"""Speculative decoding, the pure part: who proposes draft tokens, how a draft is verified, and
when a request stops drafting. No llama.cpp here (the draft model lives in ``runner.py``).

A step verifies a request's last token plus ``k`` draft tokens in one decode: the target's
logits at every position come back, and :func:`verify` samples them in order with the request's
own sampler chain, keeping draft tokens while the target's choice equals them and stopping at
the first disagreement, whose sampled token is kept too (after a fully accepted draft, the token
after it is a bonus). Every emitted token is the target's own choice given exactly the tokens
before it, drawn once from its sampler, so the output is what decoding one token at a time
would give: identical for greedy requests, the same distribution (and the same draws for a
seeded sampler) for sampled ones; grammar, penalties, logit bias and logprobs see the same
token history.

Drafters: :class:`NgramDrafter` (prompt lookup: the tokens that followed the latest earlier
occurrence of the context's last n tokens) and a draft model (``runner.DraftModel``).

:class:`SpeculationGate` turns drafting off for a request whose drafts keep failing, with an
exponential back-off, so that free-form text pays almost nothing for the attempt.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hearth.engine.request import Request
from hearth.engine.sampling import SPECULATIVE_METHODS
from hearth.errors import ValidationError


@dataclass(frozen=True)
class SpeculativeConfig:
    """Engine-wide speculation settings; a request's ``speculative``/``draft_max`` override the
    first two."""

    method: str = "off"  # for requests (and models) that choose none
    draft_max: int = 8  # draft tokens per request per step
    draft_min: int = 1  # a shorter draft is not worth verifying
    ngram_max: int = 3  # prompt lookup tries the last ngram_max tokens first ...
    ngram_min: int = 2  # ... down to ngram_min (one-token matches mostly mispredict prose)
    max_running: int = 4  # a step with more running requests drafts nothing (compute-bound)
    min_acceptance: float = 0.5  # accepted / drafted over the window; below it: back off
    window: int = 4  # verifications the acceptance rate is measured over
    max_backoff: int = 64  # steps a failing request waits before it drafts again, at most

    def __post_init__(self) -> None:
        if self.method not in SPECULATIVE_METHODS:
            raise ValidationError("speculative", self.method, "unknown method")
        if not 1 <= self.draft_min <= self.draft_max:
            raise ValidationError("draft_min", self.draft_min, "must be 1..draft_max")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValidationError("ngram_min", self.ngram_min, "must be 1..ngram_max")


def verify(draft: Sequence[int], sample: Callable[[int], int]) -> list[int]:
    """The tokens a verified draft emits: ``sample(i)`` draws the target's token at draft
    position ``i`` (0: after the last accepted token); drafting continues while it equals
    ``draft[i]``. Returns the accepted draft prefix plus the target's own next token."""
    emitted: list[int] = []
    for i in range(len(draft) + 1):
        token = sample(i)
        emitted.append(token)
        if i == len(draft) or token != draft[i]:
            break
    return emitted


class PromptLookup:
    """A request's n-grams → where the continuation of their latest occurrence starts.

    Indexed incrementally: tokens only ever get appended, so each step adds the n-grams whose
    next token has become known since the last one."""

    def __init__(self, ngram_max: int = 3, ngram_min: int = 1) -> None:
        self._sizes = range(ngram_max, ngram_min - 1, -1)
        self._index: dict[tuple[int, ...], int] = {}
        self._next_end = 1  # n-grams ending before this position are indexed

    def draft(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the longest
        suffix of ``tokens`` (``ngram_max`` tokens down to ``ngram_min``); [] when none."""
        self._catch_up(tokens)
        for n in self._sizes:
            if len(tokens) <= n:
                continue
            start = self._index.get(tuple(tokens[-n:]))
            if start is not None:
                return list(tokens[start : start + k])
        return []

    def _catch_up(self, tokens: Sequence[int]) -> None:
        for end in range(self._next_end, len(tokens)):  # tokens[end] follows the n-gram
            for n in self._sizes:
                if end >= n:
                    self._index[tuple(tokens[end - n : end])] = end
        self._next_end = max(self._next_end, len(tokens))


class Drafter(Protocol):
    """Proposes draft tokens for requests that are decoding (one uncomputed token each)."""

    def propose(self, wanted: list[tuple[Request, int]]) -> dict[int, list[int]]:
        """request_id → up to k draft tokens for each (request, k)."""
        ...

    def release(self, request: Request) -> None:
        """Forget the request (it finished)."""
        ...


class NgramDrafter:
    def __init__(self, config: SpeculativeConfig) -> None:
        self._config = config
        self._lookups: dict[int, PromptLookup] = {}

    def propose(self, wanted: list[tuple[Request, int]]) -> dict[int, list[int]]:
        drafts = {}
        for request, k in wanted:
            lookup = self._lookups.get(request.request_id)
            if lookup is None:
                lookup = PromptLookup(self._config.ngram_max, self._config.ngram_min)
                self._lookups[request.request_id] = lookup
            drafts[request.request_id] = lookup.draft(request.all_tokens, k)
        return drafts

    def release(self, request: Request) -> None:
        self._lookups.pop(request.request_id, None)


@dataclass
class SpeculationGate:
    """One request's on/off switch and draft length: after a window whose acceptance rate is
    under ``min_acceptance`` the request skips drafting for ``backoff`` steps, and the back-off
    doubles (up to ``max_backoff``) each time it fails again; a good window halves it. The draft
    length (``length``) falls to one more than the accepted run after a rejection and doubles
    after each fully accepted draft (up to ``draft_max``), so a failing draft is a short one."""

    config: SpeculativeConfig
    length: int = 0  # 0: draft_max (set on creation)
    cooldown: int = 0
    backoff: int = 1
    drafted: int = 0
    accepted: int = 0
    _window: deque[tuple[int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.length = self.length or self.config.draft_max

    def ready(self) -> bool:
        """Whether the request may draft this step (call once per step it could)."""
        if self.cooldown > 0:
            self.cooldown -= 1
            return False
        return True

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if accepted == drafted:
            self.length = min(max(self.length, drafted) * 2, self.config.draft_max)
        else:
            self.length = max(self.config.draft_min, accepted + 1)
        self._window.append((drafted, accepted))
        if len(self._window) > self.config.window:
            self._window.popleft()
        window_drafted = sum(d for d, _ in self._window)
        window_accepted = sum(a for _, a in self._window)
        if window_accepted < self.config.min_acceptance * window_drafted:
            self.cooldown = self.backoff
            self.backoff = min(self.backoff * 2, self.config.max_backoff)
            self._window.clear()  # the next attempt is judged on its own
        else:  # one good window halves the back-off: a lucky draft does not undo it all
            self.backoff = max(1, self.backoff // 2)
