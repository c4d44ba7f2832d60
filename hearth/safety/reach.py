"""Where a rule's match may still be growing at the end of a stream's text (pure).

A stream filter may send a character once no rule can still match text that covers it. For
each rule this module works out, from the pattern's parse tree, a cheap and sound test of
"could a match starting at position ``q`` still depend on text not written yet": a :class:`Reach`.

The parse tree is split into its top-level alternatives (branches). For each branch:

- ``first``: the characters a match can begin with;
- ``alphabet``: every character a match can consume (look-arounds excluded);
- ``width``: the most characters a match consumes (``None``: unbounded);

and for the whole pattern ``ahead``, the most characters a look-ahead reads past the point
where it stands. A path of the matcher that starts at ``q`` can only read past the end ``n``
of the text if ``text[q]`` is in ``first``, ``text[q:n - ahead + 1]`` lies within
``alphabet`` (every character it consumed) and ``q + width + ahead`` reaches ``n``. Where none
of the branches allows that at ``q``, the matcher's outcome at ``q`` (the match it finds there,
or none) is the same whatever text follows: it is settled. Anchors such as ``\\b`` and ``\\Z``
only look at the text where the path stands, so they are covered by the same condition;
``$`` is also true before a newline that ends the text, so it counts as reading two ahead.

Membership of a character in a set is decided by the regex package itself (each literal or
class written back as a one-character pattern with the rule's case flag, cached per
character), so case folding and ``\\w`` mean what they mean in the rule; only ``.`` is taken
as every character. A pattern this module cannot read (a POSIX class, which Python's parser
reads as a nested set, an unbounded look-ahead) gets no reach: the stream filter keeps a
fixed window for it.

The regex package's own partial matching is not used: it prefers a complete match at a later
position to a partial one at an earlier position, and it does not treat ``$`` or ``\\b`` at
the end of the text as undecided (measured), so it cannot tell what is settled.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any

import regex

Items = list[tuple[Any, Any]]
MAX_CACHED_CHARS = 65_536

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT}
_ASSERTS = {sre.ASSERT, sre.ASSERT_NOT}


class Unreadable(Exception):
    """The pattern uses a construct this module does not analyse."""


class CharSet(dict[str, bool]):
    """Membership of characters in an over-approximated set, cached per character (a C dict
    lookup once a character has been seen)."""

    def __init__(self, test: Callable[[str], bool]) -> None:
        super().__init__()
        self._test = test

    def __missing__(self, char: str) -> bool:
        if len(self) >= MAX_CACHED_CHARS:
            self.clear()  # a stream of ever new characters must not grow it without bound
        member = self[char] = self._test(char)
        return member


@dataclass(frozen=True)
class Branch:
    first: CharSet
    alphabet: CharSet
    width: int | None  # None: unbounded


@dataclass(frozen=True)
class Reach:
    """Where matches of one pattern may still be growing at the end of a text."""

    branches: tuple[Branch, ...]
    ahead: int  # how far past its position a look-ahead reads
    first: CharSet  # the characters any match can begin with

    def leftmost_open(self, text: str, start: int) -> int:
        """The first position ``q >= start`` whose outcome may still change when text is
        appended to ``text`` (``len(text)`` when none)."""
        end = best = len(text)
        edge = end - self.ahead + 1 if self.ahead > 1 else end  # consuming up to here reads on
        for branch in self.branches:
            # a match from q consumes at most width characters, so q >= edge - width
            low = start
            if branch.width is not None and edge - branch.width - 1 > start:
                low = edge - branch.width - 1
            run = edge if edge > low else low  # back to where text[run:edge] is consumable
            alphabet = branch.alphabet
            while run > low and alphabet[text[run - 1]]:
                run -= 1
            first = branch.first
            for position in range(run, best):
                if first[text[position]]:
                    best = position
                    break
            if best == start:
                break
        return best


def reach_of(pattern: regex.Pattern[str]) -> Reach | None:
    """The :class:`Reach` of ``pattern`` (compiled by the regex package from source that
    Python's ``re`` parser reads), or None when it cannot be worked out."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "possible nested set": POSIX classes
            parsed = sre_parser.parse(pattern.pattern)
        ignore_case = bool(pattern.flags & regex.IGNORECASE or parsed.state.flags & re.I)
        groups = _groups(list(parsed))
        reader = _Reader(parsed.state, groups)
        branches = tuple(reader.branch(items, ignore_case) for items in _alternatives(list(parsed)))
        firsts = [branch.first for branch in branches]
        first = CharSet(lambda char: any(f[char] for f in firsts))
        return Reach(branches, reader.ahead(list(parsed)), first)
    except (Unreadable, re.error, FutureWarning, DeprecationWarning):
        return None


def _alternatives(items: Items) -> list[Items]:
    """The top-level alternatives of a pattern: through a sequence whose only consuming part
    is one group or alternation (the look-arounds beside it consume nothing, and their reach
    is counted for the whole pattern)."""
    consuming = [(op, arg) for op, arg in items if op not in _ASSERTS and op != sre.AT]
    if len(consuming) != 1:
        return [items]
    op, arg = consuming[0]
    if op == sre.SUBPATTERN and not (arg[1] or arg[2]):  # a group without scoped flags
        inner = list(arg[3])
    elif op == sre.BRANCH:
        return [alternative for body in arg[1] for alternative in _alternatives(list(body))]
    else:
        return [items]
    return _alternatives(inner)


def _groups(items: Items, found: dict[int, Items] | None = None) -> dict[int, Items]:
    """Capturing group number → its body (for back-references)."""
    found = {} if found is None else found
    for op, arg in items:
        if op == sre.SUBPATTERN and arg[0] is not None:
            found[arg[0]] = list(arg[3])
        for child in _children(op, arg):
            _groups(child, found)
    return found


def _children(op: Any, arg: Any) -> Iterable[Items]:
    if op == sre.SUBPATTERN:
        yield list(arg[3])
    elif op in _REPEATS:
        yield list(arg[2])
    elif op == sre.BRANCH:
        for body in arg[1]:
            yield list(body)
    elif op in _ASSERTS:
        yield list(arg[1])
    elif op == sre.ATOMIC_GROUP:
        yield list(arg)


class _Reader:
    def __init__(self, state: Any, groups: dict[int, Items]) -> None:
        self._state = state
        self._groups = groups

    def branch(self, items: Items, ignore_case: bool) -> Branch:
        first: list[Callable[[str], bool]] = []
        alphabet: list[Callable[[str], bool]] = []
        self._first(items, ignore_case, first)
        self._alphabet(items, ignore_case, alphabet)
        return Branch(_union(first), _union(alphabet), self._width(items))

    def ahead(self, items: Items) -> int:
        """The farthest a look-ahead reads past its position (look-aheads in look-aheads add)."""
        farthest = 0
        for op, arg in items:
            if op == sre.AT and arg == sre.AT_END:
                farthest = max(farthest, 2)  # "$" is true before a final newline
            elif op in _ASSERTS and arg[0] == 1:
                body = list(arg[1])
                width = self._width(body)
                if width is None:
                    raise Unreadable("an unbounded look-ahead")
                farthest = max(farthest, width + self.ahead(body))
            else:
                for child in _children(op, arg):
                    farthest = max(farthest, self.ahead(child))
        return farthest

    def _width(self, items: Items) -> int | None:
        high = int(sre_parser.SubPattern(self._state, items).getwidth()[1])
        return None if high >= sre.MAXREPEAT else high

    def _nullable(self, items: Items) -> bool:
        return int(sre_parser.SubPattern(self._state, items).getwidth()[0]) == 0

    def _first(self, items: Items, ic: bool, out: list[Callable[[str], bool]]) -> bool:
        """Add the tests of characters a match of ``items`` can begin with; True when
        ``items`` can match without consuming (so what follows can begin it too)."""
        for op, arg in items:
            if op in _ASSERTS or op == sre.AT:
                continue
            if op == sre.SUBPATTERN:
                nullable = self._first(list(arg[3]), _scoped(ic, arg), out)
            elif op in _REPEATS:
                nullable = self._first(list(arg[2]), ic, out) or arg[0] == 0
            elif op == sre.BRANCH:
                nullable = any([self._first(list(body), ic, out) for body in arg[1]])
            elif op == sre.ATOMIC_GROUP:
                nullable = self._first(list(arg), ic, out)
            elif op == sre.GROUPREF:
                nullable = self._first(self._group(arg), ic, out)
            else:
                out.append(_atom(op, arg, ic))
                nullable = False
            if not nullable:
                return False
        return True

    def _alphabet(self, items: Items, ic: bool, out: list[Callable[[str], bool]]) -> None:
        for op, arg in items:
            if op in _ASSERTS or op == sre.AT:
                continue
            if op == sre.SUBPATTERN:
                self._alphabet(list(arg[3]), _scoped(ic, arg), out)
            elif op == sre.GROUPREF:
                self._alphabet(self._group(arg), ic, out)
            elif op in (sre.BRANCH, sre.ATOMIC_GROUP) or op in _REPEATS:
                for child in _children(op, arg):
                    self._alphabet(child, ic, out)
            else:
                out.append(_atom(op, arg, ic))

    def _group(self, number: int) -> Items:
        if number not in self._groups:
            raise Unreadable(f"a reference to group {number}")
        return self._groups[number]


def _scoped(ignore_case: bool, arg: Any) -> bool:
    """Case-insensitivity inside a group with scoped flags, ``(?i:...)`` or ``(?-i:...)``."""
    if arg[1] & re.I:
        return True
    if arg[2] & re.I:
        return False
    return ignore_case


def _union(tests: list[Callable[[str], bool]]) -> CharSet:
    return CharSet(lambda char: any(test(char) for test in tests))


def _atom(op: Any, arg: Any, ignore_case: bool) -> Callable[[str], bool]:
    """A test for one consuming element (a literal, ``.``, a set ``[...]``): the element
    written back as a one-character pattern and matched by the regex package itself, so case
    folding and categories such as ``\\w`` mean exactly what they mean in the rule."""
    if op == sre.ANY:
        return lambda char: True  # "." and "(?s:.)" alike
    if op == sre.LITERAL:
        source = _escape(arg)
    elif op == sre.NOT_LITERAL:
        source = f"[^{_escape(arg)}]"
    elif op == sre.IN:
        source = _set_source(list(arg))
    else:
        raise Unreadable(f"an element {op}")
    flags = regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0)
    element = regex.compile(source, flags)
    return lambda char: element.fullmatch(char) is not None


def _escape(code: int) -> str:
    return f"\\U{code:08x}"


_CATEGORIES = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}


def _set_source(items: Items) -> str:
    parts = []
    for op, arg in items:
        if op == sre.NEGATE:
            parts.append("^")
        elif op == sre.LITERAL:
            parts.append(_escape(arg))
        elif op == sre.RANGE:
            parts.append(f"{_escape(arg[0])}-{_escape(arg[1])}")
        elif op == sre.CATEGORY and arg in _CATEGORIES:
            parts.append(_CATEGORIES[arg])
        else:
            raise Unreadable(f"a set element {op} {arg}")
    return "[" + "".join(parts) + "]"
