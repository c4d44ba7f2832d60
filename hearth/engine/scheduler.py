"""Decide which tokens of which requests the next engine step computes. Pure logic: no llama.cpp.

Each step fills one token budget: every running request with a token to compute gets one, and
waiting requests get chunks of their prompts with what is left, so a long prompt never stalls
running streams for more than one chunk. There is no separate prefill and decode path; a request
simply has tokens not yet computed.

Limits: ``max_seqs`` concurrent sequences (one llama.cpp ``seq_id`` each), ``max_context``
tokens per sequence, ``kv_cells`` in total. When cells run out, the newest running request is
preempted: its cells are freed and it waits at the head of the queue to be recomputed.

Finished sequences may stay in the prefix cache (``cache_seqs`` extra sequence ids); a new
prompt that starts with a cached prefix has those cells copied instead of computed.

Adapters: llama.cpp applies LoRA adapters to a whole context, so each step computes requests of
one adapter set only (``SchedulerOutput.adapters``). Sequences are still handed out first come,
first served whatever their set; the step's set is the current one for up to ``adapter_turn``
steps while another set has work, then the next set with work in round-robin order (switching
costs llama.cpp a graph re-reservation, so sets take turns rather than alternating each step).

Speculative decoding: a decoding request may carry ``draft`` tokens (set by the engine). After
every running request has its one token, drafts get what is left of the budget and the free
cells (never more: a draft does not evict or preempt anything); the chunk then holds the last
token plus the draft, and ``update`` counts as computed only the positions the runner kept
(it removes the rejected ones' cells), so cell accounting stays exact.

Contract (vLLM v1 style): ``add_request`` → ``schedule`` → (runner executes the output's
frees, copies and chunks) → ``update`` → ``finish`` when the engine decides a request is done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from hearth.engine.prefix_cache import CacheEntry, PrefixCache
from hearth.engine.request import AdapterSet, Request, RequestStatus


@dataclass(frozen=True)
class SchedulerConfig:
    max_seqs: int = 1
    token_budget: int = 512
    max_context: int = 4096  # tokens per sequence (prompt + output)
    kv_cells: int | None = None  # default: max_seqs × max_context, so cells never run out
    cache_seqs: int = 0  # sequences kept for the prefix cache
    adapter_turn: int = 8  # steps one adapter set keeps the engine while another set waits

    @property
    def total_cells(self) -> int:
        return self.kv_cells if self.kv_cells is not None else self.max_seqs * self.max_context

    @property
    def total_seqs(self) -> int:
        return self.max_seqs + self.cache_seqs


@dataclass(frozen=True)
class ScheduledChunk:
    request: Request
    tokens: list[int]
    start_pos: int
    sample: bool  # the chunk reaches the request's last token: sample the next one
    draft: int = 0  # the last ``draft`` tokens are a draft to verify (logits at every one)


@dataclass(frozen=True)
class SeqCopy:
    src: int
    dst: int
    length: int  # positions [0, length) are copied


@dataclass(frozen=True)
class SchedulerOutput:
    chunks: list[ScheduledChunk]
    frees: list[int] = field(default_factory=list)  # sequences whose cells to free first
    copies: list[SeqCopy] = field(default_factory=list)  # then prefix copies
    adapters: AdapterSet = ()  # the set every chunk is computed with

    @property
    def num_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.chunks)


class Scheduler:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.cache = PrefixCache(config.cache_seqs)
        self._free_seq_ids = list(range(config.total_seqs - 1, -1, -1))
        self.preemptions = 0
        self.adapters: AdapterSet = ()  # the set of the current turn
        self.adapter_switches = 0
        self._turn_steps = config.adapter_turn  # no turn yet: the first step picks the oldest
        self._turns = 0
        self._last_turn: dict[AdapterSet, int] = {}  # set → the turn it last had

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def used_cells(self) -> int:
        return self.cache.cells + sum(r.num_computed_tokens - r.shared_tokens for r in self.running)

    def add_request(self, request: Request) -> None:
        self.waiting.append(request)

    def schedule(self) -> SchedulerOutput:
        adapters = self._choose_adapters()
        step = _Step(self.config.token_budget, self.config.total_cells - self.used_cells, adapters)
        for request in list(self.running):
            if step.budget == 0:
                break
            # Not preempted earlier in this loop, and computed with this step's adapters.
            if request.status == RequestStatus.RUNNING and request.adapters == adapters:
                self._schedule_running(request, step)
        self._add_drafts(step)
        while step.budget > 0 and self.waiting and self._try_admit(step):
            pass
        return SchedulerOutput(step.chunks, step.frees, step.copies, adapters)

    def update(
        self, output: SchedulerOutput, sampled: Mapping[int, int | Sequence[int]]
    ) -> list[Request]:
        """Record computed tokens and sampled ones (one token, or the tokens a verified draft
        emitted); return the requests that got new tokens."""
        advanced = []
        for chunk in output.chunks:
            request = chunk.request
            if request.status != RequestStatus.RUNNING:  # aborted while the step ran
                continue
            found = sampled.get(request.request_id)
            tokens = [] if found is None else [found] if isinstance(found, int) else list(found)
            # A verified draft keeps the last token's cell and those of the accepted drafts.
            request.num_computed_tokens += len(tokens) if chunk.draft else len(chunk.tokens)
            if tokens:
                request.output_tokens.extend(tokens)
                advanced.append(request)
        return advanced

    def finish(self, request: Request, status: RequestStatus) -> list[int]:
        """Mark ``request`` finished; return the sequence ids whose cells the runner must free.

        A finished sequence is offered to the prefix cache, which may keep it (and return the
        ids of entries it evicted instead)."""
        if request.is_finished:
            return []
        request.status = status
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        if request.seq_id is None:
            return []
        seq_id, request.seq_id = request.seq_id, None
        computed = request.tokens_between(0, request.num_computed_tokens)
        keep = status != RequestStatus.FINISHED_ERROR
        frees = self.cache.offer(seq_id, request.prefix_scope, computed) if keep else [seq_id]
        self._free_seq_ids.extend(frees)
        return frees

    def _choose_adapters(self) -> AdapterSet:
        """This step's adapter set: the current one until its turn is over while another set
        has work, then the other set whose last turn is longest ago."""
        oldest = self._sets_with_work()
        current = self.adapters
        if not oldest or (current in oldest and len(oldest) == 1):
            return current
        if current in oldest and self._turn_steps < self.config.adapter_turn:
            self._turn_steps += 1
            return current
        others = [s for s in oldest if s != current]
        # Round robin: the set whose last turn is longest ago (never: oldest request first).
        self.adapters = min(others, key=lambda s: (self._last_turn.get(s, -1), oldest[s]))
        self._turns += 1
        self._last_turn = {s: t for s, t in self._last_turn.items() if s in oldest}
        self._last_turn[self.adapters] = self._turns
        self.adapter_switches += 1
        self._turn_steps = 1
        return self.adapters

    def _sets_with_work(self) -> dict[AdapterSet, int]:
        """Adapter set → id of its oldest request that this step could compute: running ones,
        and those waiting that free sequences would admit."""
        oldest: dict[AdapterSet, int] = {}
        admissible = max(0, self.config.max_seqs - len(self.running))
        candidates = [*self.running, *list(self.waiting)[:admissible]]
        for request in candidates:
            key = request.adapters
            oldest[key] = min(oldest.get(key, request.request_id), request.request_id)
        return oldest

    def _schedule_running(self, request: Request, step: _Step) -> None:
        need = min(request.num_uncomputed_tokens, step.budget)
        while need > step.free_cells and self._make_room(request, step):
            pass
        if need > step.free_cells:
            self._preempt(request, step)
            return
        step.add(_chunk(request, need))

    def _add_drafts(self, step: _Step) -> None:
        """Extend decoding chunks with their requests' drafts, with what budget and free cells
        are left (each request's draft is cut to fit; nothing is evicted for a draft)."""
        for i, chunk in enumerate(step.chunks):
            request = chunk.request
            draft, request.draft = request.draft, []
            if not draft or not chunk.sample or len(chunk.tokens) != 1:
                continue
            room = self.config.max_context - request.num_tokens - 1
            k = min(len(draft), step.budget, step.free_cells, room)
            if k <= 0:
                continue
            step.chunks[i] = replace(chunk, tokens=chunk.tokens + draft[:k], draft=k)
            step.budget -= k
            step.free_cells -= k

    def _make_room(self, for_request: Request, step: _Step) -> bool:
        """Free cells: cached prefixes first, then the newest running request."""
        if self._evict_cached(step):
            return True
        newest = self.running[-1]
        if newest is for_request:
            return False
        self._preempt(newest, step)
        return True

    def _evict_cached(self, step: _Step, protect: CacheEntry | None = None) -> bool:
        entry = self.cache.evict_lru(protect)
        if entry is None:
            return False
        step.free(entry.seq_id, len(entry.tokens))
        self._free_seq_ids.append(entry.seq_id)
        return True

    def _preempt(self, request: Request, step: _Step) -> None:
        assert request.seq_id is not None
        step.free(request.seq_id, request.num_computed_tokens - request.shared_tokens)
        step.drop_chunks_of(request)
        self._free_seq_ids.append(request.seq_id)
        self.running.remove(request)
        request.seq_id = None
        request.num_computed_tokens = 0
        request.shared_tokens = 0
        request.status = RequestStatus.PREEMPTED
        self.waiting.appendleft(request)
        self.preemptions += 1

    def _try_admit(self, step: _Step) -> bool:
        """Admit the head of the queue if a sequence and cells for its whole prompt are free."""
        if len(self.running) >= self.config.max_seqs:
            return False
        request = self.waiting[0]
        source = self._prefix_source(request)
        if source is None:
            return False  # n > 1: wait until the first completion has computed the prompt
        source_seq, shared, protect = source
        need = request.num_tokens - shared + 1
        while not self._free_seq_ids or need > step.free_cells:
            if not self._evict_cached(step, protect):
                return False
        self.waiting.popleft()
        request.seq_id = self._free_seq_ids.pop()
        request.status = RequestStatus.RUNNING
        self.running.append(request)
        if source_seq is not None and shared > 0:
            step.copies.append(SeqCopy(source_seq, request.seq_id, shared))
        request.num_computed_tokens = request.shared_tokens = shared
        request.cached_tokens = max(request.cached_tokens, shared)
        self.cache.record(shared)
        if request.adapters == step.adapters:  # else it computes in its own set's turn
            step.add(_chunk(request, min(request.num_uncomputed_tokens, step.budget)))
        return True

    def _prefix_source(self, request: Request) -> tuple[int | None, int, CacheEntry | None] | None:
        """Where the request's first cells can be copied from: (sequence, length, cache entry).

        None means "not yet": a sibling of an n > 1 request waits for the first one's prompt."""
        leader = request.follows
        if leader is not None and not leader.is_finished:
            if leader.status != RequestStatus.RUNNING or leader.seq_id is None:
                return None
            prompt_cells = len(leader.prompt_tokens) - 1
            if leader.num_computed_tokens < prompt_cells:
                return None
            return leader.seq_id, min(prompt_cells, request.num_tokens - 1), None
        match = self.cache.match(request.prefix_scope, request.all_tokens)
        if match is None:
            return None, 0, None
        # At least one token must be computed: its logits give the next token.
        return match.entry.seq_id, min(match.length, request.num_tokens - 1), match.entry


@dataclass
class _Step:
    budget: int
    free_cells: int
    adapters: AdapterSet
    chunks: list[ScheduledChunk] = field(default_factory=list)
    frees: list[int] = field(default_factory=list)
    copies: list[SeqCopy] = field(default_factory=list)

    def add(self, chunk: ScheduledChunk) -> None:
        self.chunks.append(chunk)
        self.budget -= len(chunk.tokens)
        self.free_cells -= len(chunk.tokens)

    def free(self, seq_id: int, cells: int) -> None:
        self.frees.append(seq_id)
        self.free_cells += cells

    def drop_chunks_of(self, request: Request) -> None:
        for chunk in [c for c in self.chunks if c.request is request]:
            self.chunks.remove(chunk)
            self.budget += len(chunk.tokens)
            self.free_cells += len(chunk.tokens)


def _chunk(request: Request, count: int) -> ScheduledChunk:
    start = request.num_computed_tokens
    return ScheduledChunk(
        request,
        request.tokens_between(start, start + count),
        start,
        start + count == request.num_tokens,
    )
