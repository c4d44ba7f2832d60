"""Which finished sequences still hold useful KV cells, and which new prompt can reuse them.

Pure logic: entries name a llama.cpp sequence id whose cells hold ``tokens``; the runner does the
copying (``llama_memory_seq_cp``) when the scheduler says so. Prompts are indexed by chained
hashes of fixed-size token blocks, and the chain starts from the tenant key, so one tenant's
prompts can never match (or be timed against) another's.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

BLOCK_SIZE = 16


def block_hashes(tenant: str, tokens: Sequence[int], block_size: int = BLOCK_SIZE) -> list[bytes]:
    """One hash per full block; each covers the tenant and every token before it."""
    hashes = []
    previous = hashlib.blake2b(tenant.encode(), digest_size=16).digest()
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = ",".join(map(str, tokens[start : start + block_size])).encode()
        previous = hashlib.blake2b(previous + block, digest_size=16).digest()
        hashes.append(previous)
    return hashes


@dataclass(eq=False)
class CacheEntry:
    seq_id: int
    tenant: str
    tokens: list[int]
    hashes: list[bytes]
    last_used: int = 0


@dataclass(frozen=True)
class PrefixMatch:
    entry: CacheEntry
    length: int  # tokens of the prompt whose KV cells the entry already holds


@dataclass
class PrefixCache:
    capacity: int  # sequences the cache may hold
    _entries: list[CacheEntry] = field(default_factory=list)
    _index: dict[bytes, list[CacheEntry]] = field(default_factory=dict)
    _clock: itertools.count[int] = field(default_factory=itertools.count)
    hits: int = 0
    misses: int = 0
    hit_tokens: int = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cells(self) -> int:
        return sum(len(e.tokens) for e in self._entries)

    def match(self, tenant: str, prompt: Sequence[int]) -> PrefixMatch | None:
        """The entry sharing the longest prefix with ``prompt`` (at least one block)."""
        candidates: list[CacheEntry] = []
        for digest in block_hashes(tenant, prompt):
            found = self._index.get(digest)
            if not found:
                break
            candidates = found
        if not candidates:
            return None
        best = max(candidates, key=lambda e: _common_prefix(e.tokens, prompt))
        best.last_used = next(self._clock)
        return PrefixMatch(best, _common_prefix(best.tokens, prompt))

    def record(self, reused_tokens: int) -> None:
        """Count one admitted prompt for the hit-rate statistics."""
        if reused_tokens:
            self.hits += 1
            self.hit_tokens += reused_tokens
        else:
            self.misses += 1

    def offer(self, seq_id: int, tenant: str, tokens: list[int]) -> list[int]:
        """Keep ``seq_id``'s cells for reuse; return the sequence ids to free (evicted, refused)."""
        if self.capacity == 0 or len(tokens) < BLOCK_SIZE:
            return [seq_id]
        hashes = block_hashes(tenant, tokens)
        if self._covered(tenant, tokens, hashes):
            return [seq_id]
        freed = [self._evict(victim) for victim in self._lru_victims(len(self._entries) + 1)]
        entry = CacheEntry(seq_id, tenant, tokens, hashes, next(self._clock))
        self._entries.append(entry)
        for digest in hashes:
            self._index.setdefault(digest, []).append(entry)
        return freed

    def evict_lru(self, protect: CacheEntry | None = None) -> CacheEntry | None:
        """Drop the least recently used entry other than ``protect``; None when there is none."""
        candidates = [e for e in self._entries if e is not protect]
        if not candidates:
            return None
        victim = min(candidates, key=lambda e: e.last_used)
        self._evict(victim)
        return victim

    def clear(self) -> list[int]:
        return [self._evict(entry) for entry in list(self._entries)]

    def _covered(self, tenant: str, tokens: list[int], hashes: list[bytes]) -> bool:
        """An entry already holds all of ``tokens``: a second copy would waste a sequence."""
        if not hashes:
            return False
        return any(
            e.tenant == tenant and _common_prefix(e.tokens, tokens) == len(tokens)
            for e in self._index.get(hashes[-1], [])
        )

    def _lru_victims(self, wanted_size: int) -> list[CacheEntry]:
        excess = wanted_size - self.capacity
        if excess <= 0:
            return []
        return sorted(self._entries, key=lambda e: e.last_used)[:excess]

    def _evict(self, entry: CacheEntry) -> int:
        self._entries.remove(entry)
        for digest in entry.hashes:
            bucket = self._index[digest]
            bucket.remove(entry)
            if not bucket:
                del self._index[digest]
        return entry.seq_id


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
