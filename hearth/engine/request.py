"""A generation request as the engine sees it, and what it sends back."""

from __future__ import annotations

import enum
import itertools
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hearth.engine.sampling import SamplingParams

# LoRA adapter files applied (at scale 1) while a request is computed; () means the base alone.
# llama.cpp applies adapters to a whole context, so one engine step serves one adapter set.
AdapterSet = tuple[Path, ...]


class RequestStatus(enum.IntEnum):
    """Ordered so that ``status > PREEMPTED`` means finished."""

    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2
    FINISHED_STOPPED = 3
    FINISHED_LENGTH = 4
    FINISHED_ABORTED = 5
    FINISHED_ERROR = 6

    @property
    def finished(self) -> bool:
        return self > RequestStatus.PREEMPTED

    @property
    def finish_reason(self) -> str | None:
        return _FINISH_REASONS.get(self)


_FINISH_REASONS = {
    RequestStatus.FINISHED_STOPPED: "stop",
    RequestStatus.FINISHED_LENGTH: "length",
    RequestStatus.FINISHED_ABORTED: "abort",
    RequestStatus.FINISHED_ERROR: "error",
}

_request_ids = itertools.count(1)


@dataclass
class RequestTimings:
    """Monotonic timestamps for metrics: queued, first token, finished."""

    queued: float
    first_token: float | None = None
    finished: float | None = None


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # most likely tokens at this position, best first


@dataclass(frozen=True)
class RequestOutput:
    """One chunk of a request's answer: new text and tokens since the previous chunk."""

    request_id: int
    text: str
    token_ids: tuple[int, ...]
    finished: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()
    error: BaseException | None = None


@dataclass(eq=False)
class Request:
    prompt_tokens: list[int]
    params: SamplingParams
    request_id: int = field(default_factory=lambda: next(_request_ids))
    status: RequestStatus = RequestStatus.WAITING
    seq_id: int | None = None
    num_computed_tokens: int = 0
    shared_tokens: int = 0  # computed tokens whose cells were copied from the prefix cache
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (for usage reports)
    cache_key: str = ""  # tenant: prefixes are only shared between requests with the same key
    adapters: AdapterSet = ()
    output_tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    deadline: float | None = None  # monotonic time after which the engine aborts it
    follows: Request | None = None  # n > 1: copy this request's prompt cells instead of computing
    # Speculative decoding: tokens proposed for this step (set by the engine before it
    # schedules, verified with the request's last token; see hearth.engine.speculative).
    draft: list[int] = field(default_factory=list)
    timings: RequestTimings = field(default_factory=lambda: RequestTimings(time.monotonic()))
    outputs: queue.Queue[RequestOutput] = field(default_factory=queue.Queue)
    # Called (from the engine thread) after each output is queued: lets an asyncio consumer
    # wait on an event instead of parking a thread on the queue.
    notify: Callable[[], None] | None = None

    @property
    def prefix_scope(self) -> str:
        """Who may share this request's cached prefixes: the same tenant with the same adapters
        (an adapter changes the KV values, so cells computed under one set are wrong for
        another)."""
        if not self.adapters:
            return self.cache_key
        return "\0".join([self.cache_key, *map(str, self.adapters)])

    @property
    def all_tokens(self) -> list[int]:
        return self.prompt_tokens + self.output_tokens

    def tokens_between(self, start: int, end: int) -> list[int]:
        """Tokens ``[start, end)`` of prompt + output, without copying both lists each step."""
        n_prompt = len(self.prompt_tokens)
        if start >= n_prompt:
            return self.output_tokens[start - n_prompt : end - n_prompt]
        if end <= n_prompt:
            return self.prompt_tokens[start:end]
        return self.prompt_tokens[start:] + self.output_tokens[: end - n_prompt]

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_tokens) + len(self.output_tokens)

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status.finished
