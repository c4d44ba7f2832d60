"""Render chat messages through a model's own chat template, safely.

A GGUF's chat template is untrusted input (CVE-2024-34359 ran code through one). It renders in
``ImmutableSandboxedEnvironment`` (no underscore attributes, no mutation of lists or dicts), and
everything that could make one render run long or grow large is bounded:

- time: a deadline (:data:`RENDER_SECONDS`) checked on every call, attribute lookup, loop
  iteration and output chunk; each ``{% for %}`` is rewritten to iterate through a guard that also
  counts iterations (:data:`MAX_LOOP_ITERATIONS` per render; ``range()`` is the sandbox's, at most
  100,000 items);
- size: ``*``, ``**``, ``+``, ``%`` and ``~``, block captures and macro output, ``join``,
  ``replace`` and format widths are checked *before* the value is built
  (:data:`MAX_OUTPUT_CHARS`); an integer argument to any call or filter above
  :data:`MAX_INT_ARG` is refused (``center(10**9)``);
- the source is at most :data:`MAX_SOURCE_CHARS` (compiling is not free), and jinja's
  constant folding at compile time runs under the same deadline;
- ``lipsum`` is removed; ``raise_exception`` and ``strftime_now`` are added (Hugging Face's names).

Any failure, including recursion that never ends, is one :class:`TemplateError`. State is per
thread, so one template renders for several requests at once.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import filters as jinja_filters
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from hearth.errors import TemplateError

RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 4_000_000
MAX_SOURCE_CHARS = 1 << 17  # real chat templates are tens of KB; compiling costs ~20 µs a char
MAX_LOOP_ITERATIONS = 100_000
MAX_INT_ARG = 1_000_000
MAX_INT_BITS = 1 << 16  # integers a template computes stay below 2**65536
_LOOP_FILTER = "__hearth_loop"
_SIZE_FILTER = "__hearth_sized"
_PERCENT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class _RenderState(threading.local):
    deadline: float = math.inf
    iterations: int = 0


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus the time and size limits of the module docstring."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True)
        self.state = _RenderState()
        self.filters = {name: _guarded_filter(self, f) for name, f in self.filters.items()}
        self.filters["join"] = _guarded_filter(self, _bounded_join)
        self.filters["replace"] = _guarded_filter(self, _bounded_replace)
        self.filters[_LOOP_FILTER] = self.bounded_loop
        self.filters[_SIZE_FILTER] = _sized
        self.globals.pop("lipsum", None)
        self.concat = _bounded_concat  # type: ignore[method-assign]  # captures, macros

    def start(self) -> None:
        self.state.deadline = time.monotonic() + RENDER_SECONDS
        self.state.iterations = 0

    def check_deadline(self) -> None:
        if time.monotonic() > self.state.deadline:
            raise TemplateError(f"chat template took longer than {RENDER_SECONDS}s to render")

    def bounded_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.check_deadline()
            self.state.iterations += 1
            if self.state.iterations > MAX_LOOP_ITERATIONS:
                raise TemplateError(
                    f"chat template ran more than {MAX_LOOP_ITERATIONS} loop iterations"
                )
            yield item

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self.check_deadline()
        _check_int_args(args, kwargs)
        if type(getattr(__obj, "__self__", None)) is str:  # "x".center(...), "".join(...)
            _check_str_method(__obj, args)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.check_deadline()
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.check_deadline()
        _check_binop(operator, left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)  # "{:>9}".format(...): the sandbox's formatter
        if wrapped is None:
            return None
        text = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_fields(text)
            return str(_sized(wrapped(*args, **kwargs)))

        return checked


class _LoopAndConcatGuard(NodeTransformer):
    """Rewrites ``{% for x in it %}`` to iterate ``it|__hearth_loop`` and ``a ~ b`` to
    ``(a ~ b)|__hearth_sized``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template refused the messages: {message}")


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(
                f"chat template is {len(source)} characters; at most {MAX_SOURCE_CHARS}"
            )
        self._env = _BoundedEnvironment()
        self._env.globals["raise_exception"] = _raise_exception
        self._env.globals["strftime_now"] = _strftime_now
        self._env.start()  # jinja folds constant expressions while compiling: bound that too
        try:
            tree = _LoopAndConcatGuard().visit(self._env.parse(source))
            self._template = self._env.from_string(tree)
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(
                f"chat template is invalid: {error.message} (line {error.lineno})"
            ) from None
        except (jinja2.TemplateError, RecursionError, MemoryError) as error:
            raise TemplateError(f"chat template cannot be compiled: {_describe(error)}") from None
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
        self._env.start()
        try:
            return _collect(self._template.generate(context), self._env.check_deadline)
        except TemplateError:
            raise
        except Exception as error:  # a hostile template can raise anything; it is one error
            raise TemplateError(f"chat template failed: {_describe(error)}") from None


def _describe(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "it recursed too deeply"
    if isinstance(error, MemoryError):
        return "it ran out of memory"
    text = " ".join(str(error).split())[:300]
    return text if isinstance(error, jinja2.TemplateError) else f"{type(error).__name__}: {text}"


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


# Size checks, made before a value is built ------------------------------------------------------


def _too_big(what: str) -> TemplateError:
    return TemplateError(f"chat template refused: {what} (limit {MAX_OUTPUT_CHARS} characters)")


def _sized(value: Any) -> Any:
    if isinstance(value, str | list | tuple | dict | bytes) and len(value) > MAX_OUTPUT_CHARS:
        raise _too_big(f"a value of {len(value)} items")
    return value


def _check_int_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARG:
            raise TemplateError(f"chat template refused: argument {value} exceeds {MAX_INT_ARG}")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
        if (
            _is_int(left)
            and _is_int(right)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            raise TemplateError("chat template refused: an integer product is too large")
    elif operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1:
        if right > 0 and right * left.bit_length() > MAX_INT_BITS:
            raise TemplateError("chat template refused: an integer power is too large")
    elif operator == "+" and isinstance(left, str | list | tuple) and hasattr(right, "__len__"):
        if len(left) + len(right) > MAX_OUTPUT_CHARS:
            raise _too_big("a concatenation")
    elif operator == "%" and isinstance(left, str):
        _check_percent_widths(left)
        _check_int_args(right if isinstance(right, tuple) else (right,), {})


def _check_repeat(sequence: Any, count: Any) -> None:
    if not (isinstance(sequence, str | list | tuple) and _is_int(count)):
        return
    if len(sequence) * count > MAX_OUTPUT_CHARS:
        raise _too_big(f"repeating {len(sequence)} items {count} times")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_percent_widths(text: str) -> None:
    for match in _PERCENT_WIDTH.finditer(text):
        for number in match.groups():
            if number and int(number) > MAX_INT_ARG:
                raise TemplateError(f"chat template refused: format width {number}")


def _check_format_fields(text: str) -> None:
    for field in _FORMAT_FIELD.findall(text):
        for number in _DIGITS.findall(field):
            if len(number) > len(str(MAX_INT_ARG)) or int(number) > MAX_INT_ARG:
                raise TemplateError(f"chat template refused: format width {number}")


def _check_str_method(method: Any, args: Sequence[Any]) -> None:
    name = getattr(method, "__name__", "")
    text: str = method.__self__
    if name == "replace" and len(args) >= 2:
        _check_replace(text, args[0], args[1])
    elif name == "join" and args:
        _check_join(args[0], len(text))


def _check_replace(text: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        if len(text) + hits * len(new) > MAX_OUTPUT_CHARS:
            raise _too_big("a replace")


def _check_join(items: Any, separator: int) -> None:
    if isinstance(items, str | list | tuple):
        total = sum(len(item) if isinstance(item, str) else 32 for item in items)
        if total + separator * max(len(items) - 1, 0) > MAX_OUTPUT_CHARS:
            raise _too_big("a join")


def _bounded_concat(parts: Iterable[str]) -> str:
    pieces = list(parts)
    if sum(len(piece) for piece in pieces) > MAX_OUTPUT_CHARS:
        raise _too_big("captured output")
    return "".join(pieces)


@jinja2.pass_eval_context
def _bounded_join(
    eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    items = list(value) if not isinstance(value, str | list | tuple) else value
    _check_join(items, len(d))
    return str(jinja_filters.do_join(eval_ctx, items, d, attribute))


@jinja2.pass_eval_context
def _bounded_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(str(s), old, new)
    return str(jinja_filters.do_replace(eval_ctx, s, old, new, count))


def _guarded_filter(env: _BoundedEnvironment, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with the deadline, the integer-argument check and the result-size check;
    jinja's pass_* marker (which context to pass first) is kept."""

    marker = getattr(function, "jinja_pass_arg", None)
    value_index = 0 if marker is None else 1  # a pass_* filter gets a context first

    def guarded(*args: Any, **kwargs: Any) -> Any:
        env.check_deadline()
        _check_int_args(args[value_index + 1 :], kwargs)
        if function is jinja_filters.do_format and args:
            _check_percent_widths(str(args[0]))
        return _sized(function(*args, **kwargs))

    if marker is not None:
        guarded.jinja_pass_arg = marker  # type: ignore[attr-defined]
    return guarded


def _strftime_now(fmt: str) -> str:
    return time.strftime(fmt)
