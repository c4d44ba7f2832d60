"""Turn a stream of token bytes into a stream of text, honouring stop strings.

Two things make this harder than joining pieces: one UTF-8 character may be split across
tokens (hold the partial bytes back), and a stop string may span tokens (hold back the tail
that could still become a stop string, and cut the text where the stop string begins).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class TextDelta:
    text: str
    stopped: bool = False


class StreamingDetokenizer:
    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = stop
        self._pending = ""  # decoded text not yet released (might start a stop string)
        self._stopped = False

    def feed(self, piece: bytes) -> TextDelta:
        """Add one token's bytes; return the text that is now safe to show."""
        if self._stopped:
            return TextDelta("", stopped=True)
        self._pending += self._decoder.decode(piece)
        cut = self._find_stop()
        if cut is not None:
            text, self._pending, self._stopped = self._pending[:cut], "", True
            return TextDelta(text, stopped=True)
        release = len(self._pending) - self._partial_stop_length()
        if release <= 0:
            return TextDelta("")
        text, self._pending = self._pending[:release], self._pending[release:]
        return TextDelta(text)

    def flush(self) -> str:
        """At the end of generation: everything still held back (partial bytes become U+FFFD)."""
        if self._stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        cut = self._find_stop()
        text = self._pending if cut is None else self._pending[:cut]
        self._pending = ""
        return text

    def _partial_stop_length(self) -> int:
        """Length of the longest tail of the pending text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for k in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def _find_stop(self) -> int | None:
        positions = [i for s in self._stop if (i := self._pending.find(s)) >= 0]
        return min(positions) if positions else None
