"""Scanning text with a policy, and the hold-back filter that applies it to a stream.

:class:`StreamFilter` is pure logic. It keeps the last ``hold_back`` characters of a stream
unsent, so a rule can still fire on text that is not complete yet (a card number, a blocklisted
phrase, a secret split across deltas), and it never sends the start of a match that may still
be growing. Fed a text whole or in any pieces, it sends the same text (split invariance), as
long as no match is longer than the window and no rule needs more than the window's worth of
text before a match to recognise it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from hearth.safety.pii import find_pii
from hearth.safety.policy import Action, Policy
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


@dataclass
class StreamFilter:
    """Apply ``policy`` to a stream of text deltas with a hold-back window."""

    policy: Policy
    hold_back: int = 64
    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _pending: str = ""
    _context: str = ""
    blocked: Hit | None = None

    def feed(self, delta: str, *, final: bool = False) -> Step:
        """Take ``delta``; return the text now safe to send (``final``: the stream ended)."""
        if self.blocked is not None:
            return Step("", self.blocked)
        self._pending += delta
        offset = len(self._context)
        hits = [_shift(h, offset) for h in scan(self.policy, self._context + self._pending)]
        hits = [h for h in hits if h.end > 0]
        if hits and hits[0].category == "timeout":  # fail closed, now: nothing more is sent
            self._count(hits[:1])
            self.blocked = hits[0]
            return Step("", hits[0])
        cut = self._cut(hits, final)
        settled = [h for h in hits if h.end <= cut]
        block = next((h for h in settled if h.action == "block"), None)
        if block is not None:
            cut = block.start
            settled = [h for h in settled if h.end <= cut or h is block]
        self._count(settled)
        sent = redact(self._pending[:cut], [h for h in settled if h.end <= cut])
        self._context = (self._context + self._pending[:cut])[-CONTEXT_CHARS:]
        self._pending = self._pending[cut:]
        self.blocked = block
        return Step(sent, block)

    def finish(self) -> Step:
        return self.feed("", final=True)

    def _cut(self, hits: list[Hit], final: bool) -> int:
        """Where sendable text ends: a window from the end, moved back to the start of any
        match that crosses it (it may still grow), unless the held text is too long."""
        size = len(self._pending)
        if final:
            return size
        cut = max(0, size - self.hold_back)
        if size > self.hold_back * MAX_PENDING_WINDOWS:
            return cut  # a runaway match: bound the memory and time it may take
        moved = True
        while moved:
            moved = False
            for hit in hits:
                if hit.start < cut < hit.end:
                    cut, moved = hit.start, True
        return cut

    def _count(self, hits: list[Hit]) -> None:
        for hit in hits:
            self.decisions[(hit.rule, hit.category, hit.action)] += 1


def _shift(hit: Hit, offset: int) -> Hit:
    """``hit`` in the pending text's coordinates (a match that began in the context is clipped)."""
    return Hit(max(0, hit.start - offset), hit.end - offset, hit.rule, hit.category, hit.action)


def screen_text(policy: Policy, text: str) -> tuple[str, Hit | None, Counter[tuple[str, str, str]]]:
    """A whole text at once: the redacted text, the block hit if any, and the decisions."""
    stream = StreamFilter(policy, hold_back=policy.hold_back)
    step = stream.finish() if not text else stream.feed(text, final=True)
    return step.text, step.blocked, stream.decisions
