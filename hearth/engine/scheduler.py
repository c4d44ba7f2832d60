"""Decide which tokens of which requests the next engine step computes. Pure logic: no llama.cpp.

Each step fills one token budget: every running request with a token to compute gets one, and
waiting requests get chunks of their prompts with what is left. There is no separate prefill
and decode path; a request simply has tokens not yet computed. A request is admitted when a
sequence id (one llama.cpp ``seq_id`` per request) is free.

Contract (vLLM v1 style): ``add_request`` → ``schedule`` → (runner executes) → ``update`` →
``finish`` when the engine decides a request is done. The engine has the runner free the
request's KV cells before calling ``finish``, which returns the sequence id to the pool at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hearth.engine.request import Request, RequestStatus


@dataclass(frozen=True)
class SchedulerConfig:
    max_seqs: int = 1
    token_budget: int = 512
    max_context: int = 4096  # tokens per sequence (prompt + output)


@dataclass(frozen=True)
class ScheduledChunk:
    request: Request
    tokens: list[int]
    start_pos: int
    sample: bool  # the chunk reaches the request's last token: sample the next one


@dataclass(frozen=True)
class SchedulerOutput:
    chunks: list[ScheduledChunk]

    @property
    def num_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.chunks)


class Scheduler:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._free_seq_ids = list(range(config.max_seqs - 1, -1, -1))

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add_request(self, request: Request) -> None:
        self.waiting.append(request)

    def schedule(self) -> SchedulerOutput:
        budget = self.config.token_budget
        chunks: list[ScheduledChunk] = []
        for request in self.running:
            if budget == 0:
                break
            chunk = self._chunk(request, budget)
            chunks.append(chunk)
            budget -= len(chunk.tokens)
        while budget > 0 and self.waiting and self._free_seq_ids:
            request = self._admit()
            chunk = self._chunk(request, budget)
            chunks.append(chunk)
            budget -= len(chunk.tokens)
        return SchedulerOutput(chunks)

    def update(self, output: SchedulerOutput, sampled: dict[int, int]) -> list[Request]:
        """Record computed tokens and sampled ones; return the requests that got a new token."""
        advanced = []
        for chunk in output.chunks:
            request = chunk.request
            if request.is_finished:  # aborted while the step ran
                continue
            request.num_computed_tokens += len(chunk.tokens)
            token = sampled.get(request.request_id)
            if token is not None:
                request.output_tokens.append(token)
                advanced.append(request)
        return advanced

    def finish(self, request: Request, status: RequestStatus) -> None:
        """Mark ``request`` finished and return its sequence id (its KV cells must be free)."""
        if request.is_finished:
            return
        request.status = status
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        if request.seq_id is not None:
            self._free_seq_ids.append(request.seq_id)
            request.seq_id = None

    def _admit(self) -> Request:
        request = self.waiting.popleft()
        request.seq_id = self._free_seq_ids.pop()
        request.status = RequestStatus.RUNNING
        self.running.append(request)
        return request

    def _chunk(self, request: Request, budget: int) -> ScheduledChunk:
        start = request.num_computed_tokens
        count = min(request.num_uncomputed_tokens, budget)
        return ScheduledChunk(
            request,
            request.tokens_between(start, start + count),
            start,
            start + count == request.num_tokens,
        )
