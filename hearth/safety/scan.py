"""Scanning text with a policy, and the filter that applies it to a stream as it is written.

:class:`StreamFilter` is pure logic. It sends each character of a stream as soon as no rule
can still match text that covers it: every rule's matcher settles its matches from left to
right, and stops at the first position where a match may still depend on text not written
yet (:mod:`hearth.safety.reach` says where that is, from the rule's pattern). Text before the
first such position of any rule, and before any match that crosses it, is sent, redacted;
in ordinary prose that is everything but the word being written. Each character is scanned a
bounded number of times per rule, and, fed a text whole or in any pieces, the filter sends the
same text as :func:`screen_text` gives for the whole text (split invariance); see
docs/SAFETY.md for the two cases where it falls back to a fixed window.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import regex

from hearth.safety.pii import detectors, find_pii
from hearth.safety.policy import Action, Policy
from hearth.safety.reach import MAX_CACHED_CHARS, Reach, reach_of
from hearth.safety.rules import RuleTimeout

CONTEXT_CHARS = 64  # text already sent that rules still see (for word boundaries, lookbehind)
MAX_PENDING_WINDOWS = 8  # past this many windows of held text, a growing match is cut


@dataclass(frozen=True, order=True)
class Hit:
    """Rule ``rule`` (audit ``category``) matched ``text[start:end]``; ``action`` applies."""

    start: int
    end: int
    rule: str
    category: str
    action: Action

    def placeholder(self) -> str:
        return f"[{self.rule.rsplit('.', 1)[-1].upper()}]"


def scan(policy: Policy, text: str) -> list[Hit]:
    """Every hit of ``policy`` in ``text``, in order. A rule that runs past its time limit
    fails closed: it blocks the whole text."""
    hits = (
        [
            Hit(f.start, f.end, f"pii.{f.kind}", "pii", policy.pii[f.kind])
            for f in find_pii(text, frozenset(policy.pii))
        ]
        if policy.pii
        else []
    )
    for named in policy.rules:
        try:
            spans = named.rule.spans(text)
        except RuleTimeout:
            return [Hit(0, len(text), named.rule.name, "timeout", "block")]
        hits.extend(Hit(s.start, s.end, s.rule, named.category, named.action) for s in spans)
    return _one_per_span(sorted(hits))


def _one_per_span(hits: list[Hit]) -> list[Hit]:
    """Overlapping hits of one rule (two secret detectors on one token) become one hit."""
    kept: list[Hit] = []
    last: dict[str, int] = {}  # rule → index in kept of its latest hit
    for hit in hits:
        index = last.get(hit.rule)
        if index is not None and hit.start < kept[index].end:
            kept[index] = dataclasses.replace(kept[index], end=max(kept[index].end, hit.end))
            continue
        last[hit.rule] = len(kept)
        kept.append(hit)
    return kept


def _before_crossing(hits: list[Hit], cut: int) -> int:
    """``cut`` moved back to the start of any hit that crosses it (it may not be split)."""
    moved = True
    while moved:
        moved = False
        for hit in hits:
            if hit.start < cut < hit.end:
                cut, moved = hit.start, True
    return cut


def _release(hits: list[Hit], cut: int) -> tuple[int, Hit | None]:
    """Where sending stops when everything before ``cut`` is settled: before any hit that
    crosses ``cut``, and before the first block hit (and any hit that crosses its start)."""
    cut = _before_crossing(hits, cut)
    block = next((h for h in hits if h.action == "block" and h.start < cut), None)
    if block is not None:
        cut = _before_crossing(hits, block.start)
    return cut, block


def redact(text: str, hits: list[Hit]) -> str:
    """``text`` with every redact hit replaced by its placeholder (overlaps merged: the span
    that starts first, and is longest, names the placeholder)."""
    parts: list[str] = []
    position = 0
    for hit in sorted((h for h in hits if h.action == "redact"), key=lambda h: (h.start, -h.end)):
        if hit.end <= position:
            continue
        if hit.start >= position:
            parts.append(text[position : hit.start])
            parts.append(hit.placeholder())
        position = hit.end
    parts.append(text[position:])
    return "".join(parts)


@dataclass(frozen=True)
class Step:
    """What may be sent now, and the block hit if the text must stop here."""

    text: str
    blocked: Hit | None = None


def screen_text(policy: Policy, text: str) -> tuple[str, Hit | None, Counter[tuple[str, str, str]]]:
    """A whole text at once: the redacted text, the block hit if any, and the decisions."""
    decisions: Counter[tuple[str, str, str]] = Counter()
    hits = scan(policy, text)
    if hits and hits[0].category == "timeout":
        decisions[(hits[0].rule, "timeout", "block")] += 1
        return "", hits[0], decisions
    cut, block = _release(hits, len(text))
    settled = [h for h in hits if h.end <= cut]
    for hit in [*settled, *([block] if block is not None else [])]:
        decisions[(hit.rule, hit.category, hit.action)] += 1
    return redact(text[:cut], settled), block, decisions


@dataclass(frozen=True)
class _Rule:
    """One pattern to match (a PII detector or a configured rule) and what its hits mean."""

    name: str
    category: str
    action: Action
    pattern: regex.Pattern[str]
    valid: Callable[[str], bool]
    timeout_s: float | None


class _Masks(dict[str, int]):
    """Character → bit mask of the rules a match of which may begin with it (a rule with no
    reach: always), worked out once per character."""

    def __init__(self, reaches: tuple[Reach | None, ...]) -> None:
        super().__init__()
        self._reaches = reaches

    def __missing__(self, char: str) -> int:
        if len(self) >= MAX_CACHED_CHARS:
            self.clear()
        mask = self[char] = sum(
            1 << index
            for index, reach in enumerate(self._reaches)
            if reach is None or reach.first[char]
        )
        return mask


@dataclass(frozen=True)
class _RuleSet:
    rules: tuple[_Rule, ...]
    reaches: tuple[Reach | None, ...]  # None: a fixed window stands in for the rule's reach
    masks: _Masks


@lru_cache(maxsize=1024)
def _rule_set(rules: tuple[_Rule, ...]) -> _RuleSet:
    reaches = tuple(reach_of(rule.pattern) for rule in rules)
    return _RuleSet(rules, reaches, _Masks(reaches))


def _always(_: str) -> bool:
    return True


def _rules(policy: Policy) -> _RuleSet:
    pii = [
        _Rule(f"pii.{d.kind}", "pii", policy.pii[d.kind], d.pattern, d.valid, None)
        for d in detectors(frozenset(policy.pii))
    ]
    configured = [
        _Rule(n.rule.name, n.category, n.action, n.rule.pattern, _always, n.rule.timeout_s)
        for n in policy.rules
    ]
    return _rule_set(tuple(pii + configured))


@dataclass
class _Matcher:
    """A rule's progress through a stream: everything before ``settled`` (an absolute
    position, never inside a match) has been matched for good."""

    rule: _Rule
    reach: Reach | None
    settled: int = 0

    def advance(
        self, text: str, base: int, final: bool, window: int, floor: int = 0
    ) -> tuple[list[Hit], int]:
        """The hits settled since the last call (``text`` starts at absolute ``base``), and
        where the first match that may still change could start; matches that start before
        ``floor`` count as settled however they may grow (a runaway)."""
        position = self.settled - base
        floor -= base
        open_at = max(floor, self._open(text, position, final, window))
        hits = []
        while position < open_at:
            match = self._search(text, position)
            if match is None or match.start() >= open_at:
                break
            if self.rule.valid(match.group()):
                hits.append(self._hit(base, match))
            position = match.end()
            open_at = max(open_at, floor, self._open(text, position, final, window))
        self.settled = base + max(position, open_at)
        return hits, self.settled

    def _hit(self, base: int, match: regex.Match[str]) -> Hit:
        rule = self.rule
        return Hit(base + match.start(), base + match.end(), rule.name, rule.category, rule.action)

    def _open(self, text: str, start: int, final: bool, window: int) -> int:
        if final:
            return len(text)
        if self.reach is None:
            return max(start, len(text) - window)
        return self.reach.leftmost_open(text, start)

    def _search(self, text: str, position: int) -> regex.Match[str] | None:
        try:
            return self.rule.pattern.search(text, pos=position, timeout=self.rule.timeout_s)
        except TimeoutError:
            raise RuleTimeout(self.rule.name) from None


@dataclass
class StreamFilter:
    """Apply ``policy`` to a stream of text deltas, sending text as soon as it is settled.

    ``hold_back`` bounds the delay: a rule whose pattern cannot be analysed is given a window
    of that many characters, and when over ``MAX_PENDING_WINDOWS`` windows of text are held
    (a match still growing), all but the last window is sent."""

    policy: Policy
    hold_back: int = 64
    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    blocked: Hit | None = None
    _text: str = ""  # the stream from absolute position _base on
    _base: int = 0
    _sent: int = 0  # absolute: everything before it has been sent
    _hits: list[Hit] = field(default_factory=list)  # settled, not sent yet
    _matchers: list[_Matcher] = field(default_factory=list)
    _masks: _Masks | None = None

    def __post_init__(self) -> None:
        rules = _rules(self.policy)
        self._matchers = [_Matcher(*pair) for pair in zip(rules.rules, rules.reaches, strict=True)]
        self._masks = rules.masks

    def feed(self, delta: str, *, final: bool = False) -> Step:
        """Take ``delta``; return the text now safe to send (``final``: the stream ended)."""
        if self.blocked is not None:
            return Step("", self.blocked)
        self._text += delta
        end = self._base + len(self._text)
        try:
            open_at = self._advance(delta, end, final)
        except RuleTimeout as timeout:  # fail closed, now: nothing more is sent
            self.blocked = Hit(self._sent, end, timeout.rule, "timeout", "block")
            self._count([self.blocked])
            return Step("", self.blocked)
        hits = _one_per_span(sorted(self._hits))
        cut, block = _release(hits, open_at)
        sent = [h for h in hits if h.end <= cut]
        self._count([*sent, *([block] if block is not None else [])])
        start = self._sent - self._base
        text = redact(self._text[start : cut - self._base], [_shift(h, -self._sent) for h in sent])
        self._hits = [h for h in hits if h.end > cut]
        self._sent = cut
        self.blocked = block
        self._trim()
        return Step(text, block)

    def finish(self) -> Step:
        return self.feed("", final=True)

    def _advance(self, delta: str, end: int, final: bool) -> int:
        """Let every matcher settle what it can; the first position still open (absolute).
        A matcher with nothing open, none of whose matches can begin in ``delta``, is only
        moved on (most of them, for most deltas)."""
        floor = 0
        if end - self._sent > self.hold_back * MAX_PENDING_WINDOWS:
            floor = end - self.hold_back  # a runaway match: bound the memory and the delay
        masks = self._masks
        assert masks is not None  # set in __post_init__
        may_begin = 0
        for char in delta:
            may_begin |= masks[char]
        before = end - len(delta)
        open_at = end
        for index, matcher in enumerate(self._matchers):
            if matcher.settled >= before and not may_begin >> index & 1:
                matcher.settled = end
                continue
            hits, matcher_open = matcher.advance(
                self._text, self._base, final, self.hold_back, floor
            )
            self._hits.extend(hits)
            if matcher_open < open_at:
                open_at = matcher_open
        return open_at

    def _trim(self) -> None:
        """Keep only the text not sent yet and the context before it."""
        keep = max(self._base, self._sent - CONTEXT_CHARS)
        self._text = self._text[keep - self._base :]
        self._base = keep

    def _count(self, hits: list[Hit]) -> None:
        for hit in hits:
            self.decisions[(hit.rule, hit.category, hit.action)] += 1


def _shift(hit: Hit, offset: int) -> Hit:
    return dataclasses.replace(hit, start=hit.start + offset, end=hit.end + offset)
