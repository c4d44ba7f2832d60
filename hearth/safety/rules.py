"""Blocklists and administrator-supplied regular expressions, compiled safely.

A pattern from hearth.toml is untrusted input for the matcher: a pattern such as ``(a+)+$``
backtracks exponentially on a crafted text. :func:`compile_pattern` refuses, when the
configuration is loaded, the constructs that cause it (a quantified group that contains
another unbounded quantifier, back-references, patterns over 1,000 characters, patterns that
match the empty string); every match then also runs under a time limit (the ``regex``
package's ``timeout``), so a pattern that slips past the check still cannot stall a request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any

import regex

from hearth.errors import UnsafePatternError

MAX_PATTERN_CHARS = 1000
DEFAULT_TIMEOUT_S = 0.05  # per rule per scan: generous for linear patterns on a window of text

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT}
_BACKREFS = {sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS}
_UNBOUNDED = sre_constants.MAXREPEAT


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` matched rule ``rule``."""

    rule: str
    start: int
    end: int


class RuleTimeout(Exception):
    """A rule's matching ran past its time limit (the pipeline fails closed: it blocks)."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        super().__init__(f"rule {rule!r} ran past its time limit")


def compile_pattern(source: str, where: str) -> regex.Pattern[str]:
    """``source`` compiled, or UnsafePatternError naming ``where`` and the reason."""
    if not isinstance(source, str) or not source:
        raise UnsafePatternError(f"{where}: a pattern must be a non-empty string")
    if len(source) > MAX_PATTERN_CHARS:
        raise UnsafePatternError(f"{where}: pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        parsed = sre_parser.parse(source)
    except re.error as error:
        raise UnsafePatternError(f"{where}: invalid regular expression: {error}") from None
    problem = _risk(list(parsed))
    if problem is not None:
        raise UnsafePatternError(f"{where}: pattern {source!r} refused: {problem}")
    try:
        compiled = regex.compile(source, regex.VERSION0)
    except regex.error as error:
        raise UnsafePatternError(f"{where}: invalid regular expression: {error}") from None
    if compiled.search("") is not None:
        raise UnsafePatternError(f"{where}: pattern {source!r} matches the empty string")
    return compiled


def _risk(items: list[tuple[Any, Any]]) -> str | None:
    """Why this parsed pattern risks catastrophic backtracking, or None."""
    for op, arg in items:
        if op in _BACKREFS:
            return "back-references are not allowed"
        if op in _REPEATS:
            _, high, body = arg
            if high > 1 and _nested_repeat(body, outer_unbounded=high == _UNBOUNDED):
                return "nested quantifiers (a repeated group containing a repetition)"
            problem = _risk(list(body))
        else:
            problem = next(filter(None, (_risk(c) for c in _children(op, arg))), None)
        if problem is not None:
            return problem
    return None


def _nested_repeat(body: Any, *, outer_unbounded: bool) -> bool:
    """A repetition inside a repeated group, where either of the two is unbounded."""
    for op, arg in body:
        if op in _REPEATS and arg[1] > 1 and (outer_unbounded or arg[1] == _UNBOUNDED):
            return True
        if op in _REPEATS and _nested_repeat(arg[2], outer_unbounded=outer_unbounded):
            return True
        children = _children(op, arg)
        if any(_nested_repeat(c, outer_unbounded=outer_unbounded) for c in children):
            return True
    return False


def _children(op: Any, arg: Any) -> Iterator[list[tuple[Any, Any]]]:
    if op == sre_constants.SUBPATTERN:
        yield list(arg[-1])
    elif op == sre_constants.BRANCH:
        for branch in arg[1]:
            yield list(branch)
    elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        yield list(arg[1])
    elif op == sre_constants.ATOMIC_GROUP:
        yield list(arg)


def blocklist_pattern(words: Iterable[str], where: str) -> regex.Pattern[str]:
    """One case-insensitive pattern for whole words and phrases (spaces match any whitespace)."""
    alternatives = []
    for index, word in enumerate(words):
        if not isinstance(word, str) or not word.strip():
            raise UnsafePatternError(
                f"{where}[{index}]: a blocklist entry must be a non-empty string"
            )
        parts = [regex.escape(part) for part in word.split()]
        alternatives.append(r"\s+".join(parts))
    alternatives.sort(key=len, reverse=True)  # the longest phrase wins where several start
    return regex.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", regex.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """A named pattern; its spans are reported under ``name``."""

    name: str
    pattern: regex.Pattern[str]
    timeout_s: float = DEFAULT_TIMEOUT_S

    def spans(self, text: str) -> list[Span]:
        try:
            return [
                Span(self.name, m.start(), m.end())
                for m in self.pattern.finditer(text, timeout=self.timeout_s)
            ]
        except TimeoutError:
            raise RuleTimeout(self.name) from None
