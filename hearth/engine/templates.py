"""Render chat messages through a model's own chat template, safely.

A GGUF's chat template is untrusted input (CVE-2024-34359 ran code through one). It renders in
``ImmutableSandboxedEnvironment`` (no attribute tricks, no mutation), with a time limit checked
on every call, attribute lookup and output chunk, and a cap on the output size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.errors import TemplateError

RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 4_000_000


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class _DeadlineEnvironment(ImmutableSandboxedEnvironment):
    deadline: float = 0.0

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"chat template took longer than {RENDER_SECONDS}s to render")

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self.check_deadline()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.check_deadline()
        return super().getattr(obj, attribute)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template refused the messages: {message}")


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        self._env = _DeadlineEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._env.globals["raise_exception"] = _raise_exception
        self._env.globals["strftime_now"] = _strftime_now
        try:
            self._template = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(
                f"chat template is invalid: {error.message} (line {error.lineno})"
            ) from None
        self._bos = bos_token
        self._eos = eos_token

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        context = {
            "messages": [m.as_dict() for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self._bos,
            "eos_token": self._eos,
            **(extra or {}),
        }
        self._env.deadline = time.monotonic() + RENDER_SECONDS
        try:
            return _collect(self._template.generate(context), self._env.check_deadline)
        except TemplateError:
            raise
        except jinja2.TemplateError as error:
            raise TemplateError(f"chat template failed: {error}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            raise TemplateError(f"chat template failed: {error}") from None


def _collect(chunks: Any, check_deadline: Callable[[], None]) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        check_deadline()
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateError(f"chat template output exceeds {MAX_OUTPUT_CHARS} characters")
        parts.append(chunk)
    return "".join(parts)


def _strftime_now(fmt: str) -> str:
    return time.strftime(fmt)
