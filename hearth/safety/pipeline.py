"""The safety pipeline a route runs around the engine: input checked before it, output checked
as it streams out of it, every decision audited.

``SafetyService.gate(key, model, endpoint)`` gives a request its :class:`Gate`:

- ``await gate.screen_messages(messages)`` / ``await gate.screen_prompt(text)`` before the
  engine: returns the text the model may see (PII redacted) or raises
  :class:`~hearth.errors.ContentFilteredError` (HTTP 400, ``code: content_filter``) naming the
  rule; the classifier, if configured, judges the (redacted) conversation.
- ``gate.outputs(stream_outputs(...))`` around the engine's outputs: the same
  :class:`~hearth.engine.request.RequestOutput` stream, with text held back by the window,
  redacted, and, when a block rule fires, cut: the last output is ``finished`` with
  ``finish_reason="content_filter"``, and ContentFilteredError thrown into the engine's
  stream aborts the generation (the usage log records it with status ``filtered``).

A gate with nothing to check returns the inputs and the stream untouched.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing, suppress

from hearth.engine.manager import ModelManager
from hearth.engine.request import RequestOutput
from hearth.engine.templates import ChatMessage
from hearth.errors import ContentFilteredError
from hearth.safety.audit import AuditEvent, AuditLog
from hearth.safety.classifier import Classifier, ModelClassifier, Verdict
from hearth.safety.policy import OFF, Policy, SafetyConfig
from hearth.safety.scan import StreamFilter, screen_text

CONTENT_FILTER = "content_filter"
Decisions = Counter[tuple[str, str, str]]  # (rule, category, action) → times it fired


class SafetyService:
    """One per server: the configuration, compiled policies, the audit log, classifiers."""

    def __init__(
        self, config: SafetyConfig, audit: AuditLog | None, manager: ModelManager | None = None
    ) -> None:
        self.config = config
        self.audit = audit
        self.manager = manager
        self._policies: dict[tuple[str | None, str], Policy] = {}

    def policy(self, key: str | None, model: str) -> Policy:
        if not self.config.enabled:
            return OFF
        cached = self._policies.get((key, model))
        if cached is None:
            if len(self._policies) > 10_000:
                self._policies.clear()  # keys come and go; never grow without bound
            cached = self._policies[(key, model)] = self.config.policy(key, model)
        return cached

    def gate(self, key: str | None, model: str, endpoint: str) -> Gate:
        policy = self.policy(key, model)
        classifier: Classifier | None = None
        if policy.classifier is not None and self.manager is not None:
            classifier = ModelClassifier(
                self.manager, policy.classifier.model, policy.classifier.format
            )
        return Gate(policy, self.audit, key, model, endpoint, classifier)


class Gate:
    """The safety checks of one request."""

    def __init__(
        self,
        policy: Policy,
        audit: AuditLog | None,
        key: str | None,
        model: str,
        endpoint: str,
        classifier: Classifier | None = None,
    ) -> None:
        self.policy = policy
        self._audit = audit
        self._key = key
        self._model = model
        self._endpoint = endpoint
        self._classifier = classifier
        self._conversation: list[ChatMessage] = []

    async def screen_prompt(self, text: str) -> str:
        (screened,) = await self.screen_texts([text])
        return screened

    async def screen_texts(self, texts: Sequence[str]) -> list[str]:
        """Several texts of one request (say a system prompt and a prompt), each screened."""
        messages = await self.screen_messages([ChatMessage("user", t) for t in texts])
        return [message.content for message in messages]

    async def screen_messages(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The messages the model may see; ContentFilteredError if a block rule fires."""
        if not self.policy.active("input"):
            self._conversation = list(messages)
            return list(messages)
        decisions: Decisions = Counter()
        screened = []
        try:
            for message in messages:
                text, blocked, fired = screen_text(self.policy, message.content)
                decisions.update(fired)
                if blocked is not None:
                    raise ContentFilteredError(blocked.rule)
                screened.append(ChatMessage(message.role, text))
            self._conversation = screened
            await self._judge("input", screened, decisions)
        finally:
            self._record("input", decisions)
        return screened

    def outputs(
        self, outputs: AsyncGenerator[RequestOutput, None]
    ) -> AsyncGenerator[RequestOutput, None]:
        if not self.policy.active("output"):
            return outputs
        return self._guarded(outputs)

    async def collect(self, outputs: AsyncGenerator[RequestOutput, None]) -> list[RequestOutput]:
        """Every output of a whole (not streamed) answer, checked."""
        checked = self.outputs(outputs)
        async with aclosing(checked):
            return [output async for output in checked]

    async def _guarded(
        self, outputs: AsyncGenerator[RequestOutput, None]
    ) -> AsyncGenerator[RequestOutput, None]:
        stream = StreamFilter(self.policy, hold_back=self.policy.hold_back)
        answer: list[str] = []
        decisions: Decisions = Counter()
        try:
            async with aclosing(outputs):  # leaving early closes the engine stream: an abort
                async for output in outputs:
                    step = stream.feed(output.text, final=output.finished)
                    if step.blocked is not None:
                        await _stop(outputs, step.blocked.rule)
                        yield _cut(output, step.text)
                        return
                    answer.append(output.text)
                    if output.finished and not await self._answer_safe(answer, decisions):
                        await _stop(outputs, "classifier")
                        yield _cut(output, "")
                        return
                    if step.text or output.finished:
                        yield dataclasses.replace(output, text=step.text)
        finally:
            decisions.update(stream.decisions)
            self._record("output", decisions)

    async def _answer_safe(self, answer: list[str], decisions: Decisions) -> bool:
        conversation = [*self._conversation, ChatMessage("assistant", "".join(answer))]
        try:
            await self._judge("output", conversation, decisions)
        except ContentFilteredError:
            return False
        return True

    async def _judge(
        self, direction: str, conversation: list[ChatMessage], decisions: Decisions
    ) -> None:
        """Ask the classifier, if any; ContentFilteredError when it says unsafe and blocks."""
        config = self.policy.classifier
        if self._classifier is None or config is None:
            return
        verdict: Verdict = await self._classifier.classify(conversation)
        if verdict.safe:
            return
        rule = f"classifier.{config.model}"
        decisions[(rule, ",".join(verdict.categories), config.action)] += 1
        if config.action == "block":
            raise ContentFilteredError(rule, direction)

    def _record(self, direction: str, decisions: Decisions) -> None:
        if self._audit is None:
            return
        for (rule, category, action), count in decisions.items():
            self._audit.record(
                AuditEvent(
                    key_name=self._key,
                    model=self._model,
                    endpoint=self._endpoint,
                    direction=direction,
                    rule=rule,
                    category=category,
                    action=action,
                    count=count,
                )
            )


async def _stop(outputs: AsyncGenerator[RequestOutput, None], rule: str) -> None:
    """End the engine's stream with ContentFilteredError thrown in where it waits, so that it
    aborts the generation and records the request as ``filtered`` (not as a client abort)."""
    with suppress(ContentFilteredError, StopAsyncIteration):
        await outputs.athrow(ContentFilteredError(rule, "output"))


def _cut(output: RequestOutput, text: str) -> RequestOutput:
    """The stream's last output: what may still be sent, finished by the content filter."""
    return dataclasses.replace(output, text=text, finished=True, finish_reason=CONTENT_FILTER)
