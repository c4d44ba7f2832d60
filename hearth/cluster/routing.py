"""Which replica serves a request. Pure logic: the cluster's deployment and the simulation in
``bench/simulate_cluster.py`` run this same code.

Interface (imported by the Ray Serve deployment; keep it stable)::

    router = PrefixRouter()                       # or RandomRouter(seed), LeastLoadedRouter(seed)
    replica_id: str = router.choose(prompt, replicas, adapter=None)

- ``prompt``: the prompt's token ids (``Sequence[int]``) or, before tokenization, its text
  (``str``).
- ``replicas``: one :class:`ReplicaLoad` per live replica, in any order: ``id``, ``ongoing``
  (requests in flight on it now), ``capacity`` (ongoing requests at which it is saturated),
  ``adapters`` (LoRA adapters it has loaded).
- ``adapter``: the adapter the request needs, or None.
- Returns the ``id`` of one of ``replicas``; raises :class:`~hearth.errors.EngineOverloadedError`
  when ``replicas`` is empty. Never blocks, never does I/O; safe to call from many threads.

:class:`PrefixRouter` sends prompts that start alike to the same replica, where the engine's
prefix cache (``hearth/engine/prefix_cache.py``: 16-token blocks) already holds their KV cells:

1. Routing key: the first ``blocks`` blocks of ``block_size`` tokens (the engine's cache
   granularity), or the first ``text_chars`` characters of a text prompt. A system prompt longer
   than the key sends every conversation that uses it to one replica, whatever follows.
2. Consistent hashing: each replica owns ``virtual_nodes`` points on a hash ring and the key goes
   to the owner of the next point, so adding or removing one of N replicas moves only about 1/N
   of the keys (the other replicas' caches stay warm).
3. Bounded load (Mirrokni, Thorup and Zadimoghaddam, 2018): a replica is skipped, and the walk
   goes on round the ring, when it is saturated (``ongoing >= capacity``), or when it is at
   least ``busy_fraction`` full and would hold more than ``load_factor`` times its fair share
   of the requests in flight. A hot prefix spills over to the next replicas on the ring (always
   the same ones, so they warm up too) instead of queueing on one. Below ``busy_fraction`` a
   replica keeps its prefixes however the others are loaded: one more stream in a continuous
   batch costs far less than recomputing a cached prefix elsewhere. When every replica is
   skipped, the least-loaded one takes the request.
4. Sticky adapters: a request for an adapter goes to the replicas that have it loaded (by the
   same walk, restricted to them) unless all of those are saturated; then to the least-loaded
   replica, which loads it.

:class:`RandomRouter` and :class:`LeastLoadedRouter` ignore prompts and adapters: the baselines
the simulation compares against.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hearth.engine.prefix_cache import BLOCK_SIZE
from hearth.errors import EngineOverloadedError, ValidationError

Prompt = Sequence[int] | str


@dataclass(frozen=True)
class ReplicaLoad:
    """What a router knows about one replica when it chooses."""

    id: str
    ongoing: int  # requests in flight on the replica now
    capacity: int  # ongoing requests at which the replica is saturated
    adapters: frozenset[str] = field(default_factory=frozenset)  # LoRA adapters it has loaded

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValidationError("capacity", self.capacity, "must be at least 1")
        if self.ongoing < 0:
            raise ValidationError("ongoing", self.ongoing, "must not be negative")

    @property
    def saturated(self) -> bool:
        return self.ongoing >= self.capacity

    @property
    def utilization(self) -> float:
        return self.ongoing / self.capacity


class Router(Protocol):
    def choose(
        self, prompt_tokens: Prompt, replicas: Sequence[ReplicaLoad], adapter: str | None = None
    ) -> str: ...


class RandomRouter:
    """Any replica, uniformly (what a plain load balancer does)."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def choose(
        self, prompt_tokens: Prompt, replicas: Sequence[ReplicaLoad], adapter: str | None = None
    ) -> str:
        _require(replicas)
        with self._lock:
            return self._random.choice(replicas).id


class LeastLoadedRouter:
    """The replica with the lowest ``ongoing / capacity``; ties broken at random."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def choose(
        self, prompt_tokens: Prompt, replicas: Sequence[ReplicaLoad], adapter: str | None = None
    ) -> str:
        _require(replicas)
        with self._lock:
            return least_loaded(replicas, self._random).id


class PrefixRouter:
    """Consistent hashing of the prompt's first blocks, with bounded load and sticky adapters
    (see the module docstring)."""

    def __init__(
        self,
        *,
        block_size: int = BLOCK_SIZE,
        blocks: int = 4,
        text_chars: int = 256,
        virtual_nodes: int = 64,
        load_factor: float | None = 1.25,
        busy_fraction: float = 0.25,
        seed: int | None = None,
    ) -> None:
        for name, value in (
            ("block_size", block_size),
            ("blocks", blocks),
            ("text_chars", text_chars),
            ("virtual_nodes", virtual_nodes),
        ):
            if value < 1:
                raise ValidationError(name, value, "must be at least 1")
        if load_factor is not None and load_factor < 1:
            raise ValidationError("load_factor", load_factor, "must be at least 1 (or None)")
        if not 0 <= busy_fraction <= 1:
            raise ValidationError("busy_fraction", busy_fraction, "must be between 0 and 1")
        self.block_size = block_size
        self.blocks = blocks
        self.text_chars = text_chars
        self.virtual_nodes = virtual_nodes
        self.load_factor = load_factor
        self.busy_fraction = busy_fraction
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._ring = HashRing((), virtual_nodes)

    def choose(
        self, prompt_tokens: Prompt, replicas: Sequence[ReplicaLoad], adapter: str | None = None
    ) -> str:
        _require(replicas)
        candidates = list(replicas)
        if adapter is not None:
            holders = [r for r in replicas if adapter in r.adapters and not r.saturated]
            if not holders:  # nobody has it with room: the least loaded loads it
                with self._lock:
                    return least_loaded(replicas, self._random).id
            candidates = holders
        ring = self._ring_for(replicas)
        bound = self._bound(replicas)
        by_id = {r.id: r for r in candidates}
        for replica_id in ring.walk(self.key(prompt_tokens)):
            replica = by_id.get(replica_id)
            if replica is not None and self._has_room(replica, bound):
                return replica.id
        with self._lock:
            return least_loaded(candidates, self._random).id

    def key(self, prompt: Prompt) -> int:
        """Where ``prompt`` lands on the ring: a hash of its first blocks (or characters)."""
        if isinstance(prompt, str):
            head = prompt[: self.text_chars].encode()
        else:
            head = ",".join(map(str, prompt[: self.blocks * self.block_size])).encode()
        return _hash(b"prompt:" + head)

    def _bound(self, replicas: Sequence[ReplicaLoad]) -> float:
        """A replica's fair-share bound: ``load_factor`` times the mean load once this request
        is counted (at least 1, so an idle cluster never refuses)."""
        if self.load_factor is None:
            return math.inf
        in_flight = sum(r.ongoing for r in replicas) + 1
        return max(1, math.ceil(self.load_factor * in_flight / len(replicas)))

    def _has_room(self, replica: ReplicaLoad, bound: float) -> bool:
        if replica.saturated:
            return False
        return replica.utilization < self.busy_fraction or replica.ongoing < bound

    def _ring_for(self, replicas: Sequence[ReplicaLoad]) -> HashRing:
        ids = frozenset(r.id for r in replicas)
        ring = self._ring  # one read: another thread may swap it meanwhile
        if ring.ids != ids:
            ring = self._ring = HashRing(ids, self.virtual_nodes)
        return ring


class HashRing:
    """``virtual_nodes`` points per replica id on a 64-bit ring; built once per set of ids."""

    def __init__(self, ids: frozenset[str] | tuple[str, ...], virtual_nodes: int) -> None:
        self.ids = frozenset(ids)
        points = sorted(
            (_hash(f"replica:{replica_id}#{i}".encode()), replica_id)
            for replica_id in self.ids
            for i in range(virtual_nodes)
        )
        self._points = [point for point, _ in points]
        self._owners = [owner for _, owner in points]

    def walk(self, key: int) -> Iterator[str]:
        """Every replica id once, in ring order from the first point at or after ``key``
        (lazily: a router usually needs only the first)."""
        start = bisect.bisect_left(self._points, key)
        seen: set[str] = set()
        count = len(self._owners)
        for step in range(count):
            owner = self._owners[(start + step) % count]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == len(self.ids):
                    return

    def owner(self, key: int) -> str:
        return next(self.walk(key))


def least_loaded(replicas: Sequence[ReplicaLoad], chooser: random.Random) -> ReplicaLoad:
    """The replica with the lowest utilization (then fewest requests); ties at random."""
    best = min((r.utilization, r.ongoing) for r in replicas)
    return chooser.choice([r for r in replicas if (r.utilization, r.ongoing) == best])


def _require(replicas: Sequence[ReplicaLoad]) -> None:
    if not replicas:
        raise EngineOverloadedError("no replica is available to serve the request")


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
