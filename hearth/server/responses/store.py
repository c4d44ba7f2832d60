"""Responses kept for ``GET /v1/responses/{id}`` and ``previous_response_id``, in memory.

Each entry holds the response object as it was returned and the turn's own messages (its input,
then its output), with the id of the response it continued: a chain is rebuilt by walking back,
so a long conversation costs memory linear in its length, not quadratic. Entries expire after
``ttl`` seconds (HEARTH_RESPONSES_TTL) and the oldest go first once ``max_entries`` or
``max_chars`` (text of the messages) is exceeded. A response belongs to the API key that made it:
another key (or no key) cannot read, continue or delete it.

In memory rather than in the database on purpose: responses hold prompts and answers, which the
keys/usage database never stores, and they are short-lived working state. The price: they do not
survive a restart and are not shared between replicas.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hearth.engine.templates import ChatMessage

MAX_ENTRIES = 10_000
MAX_CHARS = 64 * 2**20
MAX_CHAIN = 1_000  # a cycle is impossible (ids are fresh), but a bound costs nothing


@dataclass(frozen=True)
class StoredResponse:
    body: dict[str, Any]
    messages: tuple[ChatMessage, ...]  # this turn's input and output, without instructions
    previous_id: str | None
    owner: str | None  # the API key's name; None when keys are not in use
    expires: float

    @property
    def size(self) -> int:
        return sum(len(m.content) for m in self.messages) + 1


class ResponseStore:
    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_ENTRIES,
        max_chars: int = MAX_CHARS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def put(
        self,
        body: dict[str, Any],
        messages: list[ChatMessage],
        previous_id: str | None,
        owner: str | None,
    ) -> None:
        if self._ttl <= 0:
            return
        entry = StoredResponse(body, tuple(messages), previous_id, owner, self._clock() + self._ttl)
        with self._lock:
            self._drop_expired()
            self._entries[str(body["id"])] = entry
            self._chars += entry.size
            while len(self._entries) > self._max_entries or self._chars > self._max_chars:
                self._remove(next(iter(self._entries)))

    def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        with self._lock:
            self._drop_expired()
            entry = self._entries.get(response_id)
        return entry if entry is not None and entry.owner == owner else None

    def conversation(self, response_id: str, owner: str | None) -> list[ChatMessage] | None:
        """The messages of ``response_id`` and every turn before it, oldest first; None when
        it (or a turn it continued) is unknown, expired or another key's."""
        turns: list[tuple[ChatMessage, ...]] = []
        current: str | None = response_id
        while current is not None and len(turns) < MAX_CHAIN:
            entry = self.get(current, owner)
            if entry is None:
                return None
            turns.append(entry.messages)
            current = entry.previous_id
        return [message for turn in reversed(turns) for message in turn]

    def delete(self, response_id: str, owner: str | None) -> bool:
        with self._lock:
            entry = self._entries.get(response_id)
            if entry is None or entry.owner != owner:
                return False
            self._remove(response_id)
            return True

    def _drop_expired(self) -> None:
        now = self._clock()
        # Entries are kept in insertion order and share one ttl, so the expired lead the way.
        while self._entries:
            oldest_id, oldest = next(iter(self._entries.items()))
            if oldest.expires > now:
                return
            self._remove(oldest_id)

    def _remove(self, response_id: str) -> None:
        entry = self._entries.pop(response_id)
        self._chars -= entry.size
