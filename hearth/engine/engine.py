"""The engine: one step is schedule → execute → update; one thread owns it.

:class:`Engine` is single-threaded and testable with a fake runner. :class:`EngineThread` owns
an engine on a thread of its own (llama.cpp contexts are not thread-safe); callers submit
requests from any thread and read their outputs from the request's own queue, through a
:class:`Generation` handle. Exceptions travel back through those queues.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from hearth.engine.detokenizer import StreamingDetokenizer
from hearth.engine.request import AdapterSet, Request, RequestOutput, RequestStatus
from hearth.engine.sampling import MAX_SEED, SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from hearth.engine.speculative import Drafter, NgramDrafter, SpeculationGate, SpeculativeConfig
from hearth.errors import (
    ContextOverflowError,
    EngineError,
    EngineOverloadedError,
    ValidationError,
)

MAX_N = 16  # completions per request

log = logging.getLogger(__name__)


class TokenDecoder(Protocol):
    def token_bytes(self, token: int) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...


class Runner(Protocol):
    @property
    def tokenizer(self) -> TokenDecoder: ...

    def prepare(self, request: Request) -> None: ...

    def execute(self, output: SchedulerOutput) -> dict[int, list[int]]: ...

    def free_sequences(self, seq_ids: list[int]) -> None: ...

    def trim_sequence(self, seq_id: int, length: int) -> None: ...

    def release(self, request: Request) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineStats:
    """A snapshot for metrics: what the last step did and what is queued."""

    steps: int
    last_batch_tokens: int
    waiting: int
    running: int
    kv_cells_used: int
    kv_cells_total: int
    cached_prefixes: int
    prefix_hits: int
    prefix_misses: int
    prefix_hit_tokens: int
    preemptions: int
    finished: int
    adapter_switches: int = 0  # steps that changed the adapter set from the step before
    draft_tokens: int = 0  # speculative decoding: draft tokens verified ...
    accepted_tokens: int = 0  # ... and accepted (each verification also yields one token more)
    verifications: int = 0  # request-steps that verified a draft

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0


class Engine:
    def __init__(
        self,
        runner: Runner,
        config: SchedulerConfig,
        speculative: SpeculativeConfig | None = None,
        draft_model: Drafter | None = None,
    ) -> None:
        self.runner = runner
        self.scheduler = Scheduler(config)
        self.speculative = speculative or SpeculativeConfig()
        self.drafters: dict[str, Drafter] = {"ngram": NgramDrafter(self.speculative)}
        if draft_model is not None:
            self.drafters["draft"] = draft_model
        self._gates: dict[int, SpeculationGate] = {}
        self._drafted = self._accepted = self._verifications = 0
        self._detokenizers: dict[int, StreamingDetokenizer] = {}
        self._steps = 0
        self._last_batch_tokens = 0
        self.finished = 0  # read by other threads for the queue bound

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def add_request(self, request: Request) -> None:
        """Queue a request whose sampler the runner has prepared."""
        self._detokenizers[request.request_id] = StreamingDetokenizer(request.params.stop)
        self.scheduler.add_request(request)

    def abort(self, request: Request) -> None:
        if not request.is_finished:
            self._finish(request, RequestStatus.FINISHED_ABORTED, "")

    def step(self) -> None:
        self._expire_deadlines()
        self._propose_drafts()
        output = self.scheduler.schedule()
        sampled = self.runner.execute(output)
        self._record_verifications(output, sampled)
        for request in self.scheduler.update(output, sampled):
            self._emit(request, len(sampled[request.request_id]))
        self._steps += 1
        self._last_batch_tokens = output.num_tokens

    def speculation_method(self, params: SamplingParams) -> str:
        """How a request with ``params`` drafts: its own choice, else the engine's."""
        return params.speculative or self.speculative.method

    def _propose_drafts(self) -> None:
        """Give each decoding request that may speculate this step a draft (docs/SPECULATIVE.md:
        not under load, not while its gate backs off, not past its limits)."""
        running = self.scheduler.running
        for request in running:
            request.draft = []
        if len(running) > self.speculative.max_running:
            return
        wanted: dict[str, list[tuple[Request, int]]] = {}
        for request in running:
            method = self.speculation_method(request.params)
            if method not in self.drafters or request.num_uncomputed_tokens != 1:
                continue
            gate = self._gate(request)
            k = min(self._draft_limit(request), gate.length)
            if k >= self.speculative.draft_min and gate.ready():
                wanted.setdefault(method, []).append((request, k))
        for method, items in wanted.items():
            drafts = self.drafters[method].propose(items)
            for request, _ in items:
                draft = drafts.get(request.request_id, [])
                if len(draft) >= self.speculative.draft_min:
                    request.draft = draft

    def _draft_limit(self, request: Request) -> int:
        """Draft tokens worth verifying: the verified run and its bonus token must fit
        ``max_tokens`` and the context."""
        k = request.params.draft_max or self.speculative.draft_max
        max_tokens = request.params.max_tokens
        if max_tokens is not None:
            k = min(k, max_tokens - len(request.output_tokens) - 1)
        return min(k, self.scheduler.config.max_context - request.num_tokens - 1)

    def _gate(self, request: Request) -> SpeculationGate:
        gate = self._gates.get(request.request_id)
        if gate is None:
            gate = self._gates[request.request_id] = SpeculationGate(self.speculative)
        return gate

    def _record_verifications(self, output: SchedulerOutput, sampled: dict[int, list[int]]) -> None:
        for chunk in output.chunks:
            tokens = sampled.get(chunk.request.request_id)
            if chunk.draft and tokens:
                accepted = len(tokens) - 1
                self._gate(chunk.request).record(chunk.draft, accepted)
                self._drafted += chunk.draft
                self._accepted += accepted
                self._verifications += 1

    def _expire_deadlines(self) -> None:
        now = time.monotonic()
        for request in [*self.scheduler.running, *self.scheduler.waiting]:
            if request.deadline is not None and now > request.deadline:
                self.abort(request)

    def stats(self) -> EngineStats:
        scheduler, cache = self.scheduler, self.scheduler.cache
        return EngineStats(
            steps=self._steps,
            last_batch_tokens=self._last_batch_tokens,
            waiting=len(scheduler.waiting),
            running=len(scheduler.running),
            kv_cells_used=scheduler.used_cells,
            kv_cells_total=scheduler.config.total_cells,
            cached_prefixes=len(cache),
            prefix_hits=cache.hits,
            prefix_misses=cache.misses,
            prefix_hit_tokens=cache.hit_tokens,
            preemptions=scheduler.preemptions,
            finished=self.finished,
            adapter_switches=scheduler.adapter_switches,
            draft_tokens=self._drafted,
            accepted_tokens=self._accepted,
            verifications=self._verifications,
        )

    def fail_all(self, error: BaseException) -> None:
        """The runner failed: every live request ends with the error instead of hanging."""
        for request in [*self.scheduler.running, *self.scheduler.waiting]:
            self._finish(request, RequestStatus.FINISHED_ERROR, "", error)

    def fail_request(self, request: Request, error: BaseException) -> None:
        """``request`` never reached the scheduler (its engine is gone): end it with ``error``."""
        self.add_request(request)
        self._finish(request, RequestStatus.FINISHED_ERROR, "", error)

    def _emit(self, request: Request, count: int) -> None:
        """Pass the request's ``count`` new tokens through the finish checks one at a time, as
        if they had come one per step; cut the rest off where the request finishes, and send
        the survivors as one output."""
        new = request.output_tokens[-count:]
        del request.output_tokens[-count:]
        logprobs = request.logprobs[len(request.logprobs) - count :] if request.logprobs else []
        del request.logprobs[len(request.logprobs) - len(logprobs) :]
        if request.timings.first_token is None:
            request.timings.first_token = time.monotonic()
        tokenizer = self.runner.tokenizer
        detokenizer = self._detokenizers[request.request_id]
        text = ""
        for i, token in enumerate(new):
            request.output_tokens.append(token)
            request.logprobs.extend(logprobs[i : i + 1])
            sent = i + 1
            if tokenizer.is_eog(token):
                self._cut(request)
                self._finish(request, RequestStatus.FINISHED_STOPPED, text, new_tokens=sent)
                return
            delta = detokenizer.feed(tokenizer.token_bytes(token))
            text += delta.text
            if delta.stopped:
                self._cut(request)
                self._finish(
                    request, RequestStatus.FINISHED_STOPPED, text, new_tokens=sent, stopped=True
                )
                return
            if self._at_length_limit(request):
                self._cut(request)
                self._finish(request, RequestStatus.FINISHED_LENGTH, text, new_tokens=sent)
                return
        _deliver(request, _output(request, text, tuple(new)))

    def _cut(self, request: Request) -> None:
        """Tokens after the finishing one were dropped: drop their KV cells too, so a cached
        prefix holds exactly the request's tokens."""
        if request.num_computed_tokens > request.num_tokens and request.seq_id is not None:
            self.runner.trim_sequence(request.seq_id, request.num_tokens)
            request.num_computed_tokens = request.num_tokens

    def _at_length_limit(self, request: Request) -> bool:
        max_tokens = request.params.max_tokens
        if max_tokens is not None and len(request.output_tokens) >= max_tokens:
            return True
        return request.num_tokens >= self.scheduler.config.max_context

    def _finish(
        self,
        request: Request,
        status: RequestStatus,
        text: str,
        error: BaseException | None = None,
        *,
        new_tokens: int = 0,  # the last output tokens not sent yet
        stopped: bool = False,
    ) -> None:
        detokenizer = self._detokenizers.pop(request.request_id, None)
        if detokenizer is not None and not stopped:
            text += detokenizer.flush()
        # Free the KV cells before the caller hears "finished": it may submit again at once.
        self.runner.free_sequences(self.scheduler.finish(request, status))
        self.runner.release(request)
        for drafter in self.drafters.values():
            drafter.release(request)
        self._gates.pop(request.request_id, None)
        request.timings.finished = time.monotonic()
        self.finished += 1
        last = tuple(request.output_tokens[-new_tokens:]) if new_tokens else ()
        _deliver(request, _output(request, text, last, finished=True, error=error))


def _deliver(request: Request, output: RequestOutput) -> None:
    request.outputs.put(output)
    notify = request.notify
    if notify is not None:
        try:
            notify()
        except RuntimeError:  # the listener's event loop has closed: nobody is listening
            request.notify = None


def _output(
    request: Request,
    text: str,
    token_ids: tuple[int, ...],
    *,
    finished: bool = False,
    error: BaseException | None = None,
) -> RequestOutput:
    return RequestOutput(
        request_id=request.request_id,
        text=text,
        token_ids=token_ids,
        finished=finished,
        finish_reason=request.status.finish_reason if finished else None,
        prompt_tokens=len(request.prompt_tokens),
        completion_tokens=len(request.output_tokens),
        cached_tokens=request.cached_tokens,
        logprobs=tuple(request.logprobs[-len(token_ids) :])
        if token_ids and request.logprobs
        else (),
        error=error,
    )


def check_prompt_fits(prompt_tokens: int, max_tokens: int | None, max_context: int) -> None:
    """Refuse before any compute, as OpenAI does: prompt + max_tokens must fit the context."""
    if prompt_tokens == 0:
        raise ValidationError("prompt", "", "is empty")
    if prompt_tokens >= max_context:
        raise ContextOverflowError(
            f"prompt has {prompt_tokens} tokens but the context holds {max_context}"
            " (room for at least one new token is needed)"
        )
    if max_tokens is not None and prompt_tokens + max_tokens > max_context:
        raise ContextOverflowError(
            f"prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the context"
            f" of {max_context} tokens; ask for at most {max_context - prompt_tokens}"
        )


@dataclass(frozen=True)
class _Submit:
    request: Request


@dataclass(frozen=True)
class _Abort:
    request: Request


class Generation:
    """A caller's handle on one request: iterate its outputs, or abort it."""

    def __init__(self, request: Request, owner: EngineThread) -> None:
        self.request = request
        self._owner = owner
        self._done = False

    def __iter__(self) -> Iterator[RequestOutput]:
        """The outputs not yet taken; once the final one was taken, nothing more."""
        while not self._done:
            output = self.request.outputs.get()
            self._done = output.finished
            if output.error is not None:
                raise output.error
            yield output

    def abort(self) -> None:
        self._owner.abort(self.request)

    def text(self) -> str:
        return "".join(output.text for output in self)


class EngineThread:
    def __init__(
        self, engine: Engine, *, max_queue: int = 256, name: str = "hearth-engine"
    ) -> None:
        self.engine = engine
        self.max_pending = engine.scheduler.config.max_seqs + max_queue
        self._submitted = 0
        self._count_lock = threading.Lock()
        self._inbox: queue.SimpleQueue[_Submit | _Abort] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._death: BaseException | None = None  # what ended the thread, if not close()
        self._send_lock = threading.Lock()  # a submit never lands in a dead thread's inbox
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        prompt_tokens: list[int],
        params: SamplingParams,
        *,
        cache_key: str = "",
        timeout: float | None = None,
        adapters: AdapterSet = (),
    ) -> Generation:
        return self.submit_many(
            prompt_tokens, params, n=1, cache_key=cache_key, timeout=timeout, adapters=adapters
        )[0]

    def submit_many(
        self,
        prompt_tokens: list[int],
        params: SamplingParams,
        *,
        n: int,
        cache_key: str = "",
        timeout: float | None = None,
        adapters: AdapterSet = (),
    ) -> list[Generation]:
        """``n`` completions of one prompt, computed with ``adapters`` (LoRA files); they share
        its KV cells instead of recomputing them.

        Raises ValidationError or ContextOverflowError for this request alone, and
        EngineOverloadedError ("queue full") when ``max_queue`` requests already wait."""
        if not 1 <= n <= MAX_N:
            raise ValidationError("n", n, f"must be between 1 and {MAX_N}")
        if timeout is not None and not timeout > 0:
            raise ValidationError("timeout", timeout, "must be a positive number of seconds")
        deadline = None if timeout is None else time.monotonic() + timeout
        check_prompt_fits(len(prompt_tokens), params.max_tokens, self.max_context)
        method = self.engine.speculation_method(params)
        if method != "off" and method not in self.engine.drafters:
            raise ValidationError(
                "speculative",
                method,
                "this model has no draft model (PARAMETER speculative draft:<model>)",
            )
        self._reserve(n)
        requests: list[Request] = []
        try:
            for i in range(n):
                seed = None if params.seed is None else (params.seed + i) % (MAX_SEED + 1)
                request = Request(
                    prompt_tokens=list(prompt_tokens),
                    params=params if i == 0 else params.updated(seed=seed),
                    cache_key=cache_key,
                    adapters=adapters,
                    deadline=deadline,
                    follows=requests[0] if requests else None,
                )
                self.engine.runner.prepare(request)
                requests.append(request)
        except BaseException:
            for request in requests:
                self.engine.runner.release(request)
            self._unreserve(n)
            raise
        for request in requests:
            self._send(_Submit(request))
        return [Generation(request, self) for request in requests]

    @property
    def max_context(self) -> int:
        return self.engine.scheduler.config.max_context

    def stats(self) -> EngineStats:
        return self.engine.stats()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _reserve(self, n: int) -> None:
        with self._count_lock:
            pending = self._submitted - self.engine.finished
            if pending + n > self.max_pending:
                raise EngineOverloadedError(
                    f"queue full: {pending} requests in flight"
                    f" (limit {self.max_pending}); retry later"
                )
            self._submitted += n

    def _unreserve(self, n: int) -> None:
        with self._count_lock:
            self._submitted -= n

    def abort(self, request: Request) -> None:
        self._send(_Abort(request))

    def close(self) -> None:
        """Stop the thread (aborting what runs) and free the model."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.engine.runner.close()

    def _send(self, command: _Submit | _Abort) -> None:
        with self._send_lock:
            if self._death is not None:
                if isinstance(command, _Submit):
                    self.engine.fail_request(command.request, self._stopped_error())
                return
            self._inbox.put(command)
        self._wake.set()

    def _stopped_error(self) -> EngineError:
        return EngineError(
            f"the model's engine stopped ({self._death!r}); it is reloaded on the next request"
        )

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before draining, so a submit racing with us is not lost
            self._drain_inbox()
            if not self.engine.has_work:
                self._wake.wait()
                continue
            try:
                self.engine.step()
            except Exception as error:
                self.engine.fail_all(error)
            except BaseException as error:  # the thread ends: fail everything, queued or not
                log.critical("engine thread %s stopped: %r", self._thread.name, error)
                self._die(error)
                return
        self._drain_inbox()
        self.engine.fail_all(RuntimeError("engine closed"))

    def _die(self, error: BaseException) -> None:
        with self._send_lock:  # later submits fail in _send, under the same lock
            self._death = error
            self._drain_inbox()
            self.engine.fail_all(self._stopped_error())

    def _drain_inbox(self) -> None:
        while not self._inbox.empty():
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(command, _Submit):
                self.engine.add_request(command.request)
            else:
                self.engine.abort(command.request)
