"""The engine: one step is schedule → execute → update; one thread owns it.

:class:`Engine` is single-threaded and testable with a fake runner. :class:`EngineThread` owns
an engine on a thread of its own (llama.cpp contexts are not thread-safe); callers submit
requests from any thread and read their outputs from the request's own queue, through a
:class:`Generation` handle. Exceptions travel back through those queues.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from hearth.engine.detokenizer import StreamingDetokenizer
from hearth.engine.request import Request, RequestOutput, RequestStatus
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from hearth.errors import ContextOverflowError, ValidationError


class TokenDecoder(Protocol):
    def token_bytes(self, token: int) -> bytes: ...

    def is_eog(self, token: int) -> bool: ...


class Runner(Protocol):
    @property
    def tokenizer(self) -> TokenDecoder: ...

    def execute(self, output: SchedulerOutput) -> dict[int, int]: ...

    def release(self, request: Request) -> None: ...

    def close(self) -> None: ...


class Engine:
    def __init__(self, runner: Runner, config: SchedulerConfig) -> None:
        self.runner = runner
        self.scheduler = Scheduler(config)
        self._detokenizers: dict[int, StreamingDetokenizer] = {}

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def add_request(self, request: Request) -> None:
        check_prompt_fits(len(request.prompt_tokens), self.scheduler.config.max_context)
        self._detokenizers[request.request_id] = StreamingDetokenizer(request.params.stop)
        self.scheduler.add_request(request)

    def abort(self, request: Request) -> None:
        if not request.is_finished:
            self._finish(request, RequestStatus.FINISHED_ABORTED, "")

    def step(self) -> None:
        output = self.scheduler.schedule()
        sampled = self.runner.execute(output)
        for request in self.scheduler.update(output, sampled):
            self._emit(request)

    def fail_all(self, error: BaseException) -> None:
        """The runner failed: every live request ends with the error instead of hanging."""
        for request in [*self.scheduler.running, *self.scheduler.waiting]:
            self._finish(request, RequestStatus.FINISHED_ERROR, "", error)

    def _emit(self, request: Request) -> None:
        token = request.output_tokens[-1]
        tokenizer = self.runner.tokenizer
        if tokenizer.is_eog(token):
            self._finish(request, RequestStatus.FINISHED_STOPPED, "")
            return
        delta = self._detokenizers[request.request_id].feed(tokenizer.token_bytes(token))
        if delta.stopped:
            self._finish(request, RequestStatus.FINISHED_STOPPED, delta.text, stopped=True)
        elif self._at_length_limit(request):
            self._finish(request, RequestStatus.FINISHED_LENGTH, delta.text)
        else:
            request.outputs.put(_output(request, delta.text, (token,)))

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
        stopped: bool = False,
    ) -> None:
        detokenizer = self._detokenizers.pop(request.request_id, None)
        if detokenizer is not None and not stopped:
            text += detokenizer.flush()
        # Free the KV cells before the caller hears "finished": it may submit again at once.
        self.runner.release(request)
        self.scheduler.finish(request, status)
        last = (request.output_tokens[-1],) if request.output_tokens else ()
        request.outputs.put(_output(request, text, last, finished=True, error=error))


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
        error=error,
    )


def check_prompt_fits(prompt_tokens: int, max_context: int) -> None:
    if prompt_tokens == 0:
        raise ValidationError("prompt", "", "is empty")
    if prompt_tokens >= max_context:
        raise ContextOverflowError(
            f"prompt has {prompt_tokens} tokens but the context holds {max_context}"
            " (room for at least one new token is needed)"
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

    def __iter__(self) -> Iterator[RequestOutput]:
        while True:
            output = self.request.outputs.get()
            if output.error is not None:
                raise output.error
            yield output
            if output.finished:
                return

    def abort(self) -> None:
        self._owner.abort(self.request)

    def text(self) -> str:
        return "".join(output.text for output in self)


class EngineThread:
    def __init__(self, engine: Engine, name: str = "hearth-engine") -> None:
        self.engine = engine
        self._inbox: queue.SimpleQueue[_Submit | _Abort] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, prompt_tokens: list[int], params: SamplingParams) -> Generation:
        check_prompt_fits(len(prompt_tokens), self.engine.scheduler.config.max_context)
        request = Request(prompt_tokens=prompt_tokens, params=params)
        self._send(_Submit(request))
        return Generation(request, self)

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
        self._inbox.put(command)
        self._wake.set()

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
        self._drain_inbox()
        self.engine.fail_all(RuntimeError("engine closed"))

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
