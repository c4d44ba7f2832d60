"""The model manager: which models are loaded, under a memory budget, and for how long.

A server answers for many models but a machine holds only some of them. :class:`ModelManager`
loads a model on its first request, keeps it while requests use it and for a keep-alive
afterwards, and unloads idle models, least recently used first, when a new one needs room.

Memory: every model is charged its :func:`estimate_memory` (weights + KV cache + compute
buffers + overhead) before it loads, against ``HEARTH_MAX_MEMORY`` (default half the RAM). A
model that does not fit even after every idle model is unloaded is refused with
:class:`InsufficientMemoryError`: models in use are never unloaded. A model being loaded counts
as in use, so its memory is reserved from the moment the manager decides to load it.

Keep-alive, as in Ollama: each request may give ``keep_alive`` (seconds; 0 unloads as soon as
the model is idle, negative or ``math.inf`` keeps it forever); a request without one resets the
model to ``HEARTH_KEEP_ALIVE`` (5 minutes). The clock starts when the last user releases the
model. :meth:`ModelManager.expire` unloads what has expired; acquire and release call it, and
:meth:`ModelManager.start_reaper` runs it on a timer thread.

Threads: every method may be called from any thread. One lock guards the table of models.
Loading (seconds) happens outside the lock; threads that want a model that is loading wait for
that load (a ``Future``), so a model never loads twice, and a failed load is delivered to every
waiter and forgotten, so the next request tries again. Unloading (``llama_free``, milliseconds)
happens under the lock, so memory counted as free is free.

Cores are a budget too: llama.cpp's worker threads spin while they wait, so two models decoding
at once on a 2-core machine slow each other down tens of times. The runner therefore holds one
process-wide lock around ``llama_decode`` (``runner.DECODE_LOCK``): models may be loaded side by
side and their engines step in turn, but only one decodes at a time. The manager budgets memory
only; it does not schedule decodes.

Hold the model for as long as you read from it: a :class:`Generation` read after the ``with``
block ends may find its model unloaded (the read then fails with "engine closed").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hearth.config import Settings
from hearth.engine.engine import EngineStats
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.memory import MemoryEstimate, estimate_memory
from hearth.errors import EngineError, InsufficientMemoryError
from hearth.log import get_logger
from hearth.store.names import parse_name
from hearth.store.profile import ModelProfile
from hearth.store.store import LocalModel, Store
from hearth.units import FOREVER, format_size, parse_keep_alive

__all__ = [
    "LoadedModelStatus",
    "Loader",
    "MemoryEstimate",
    "ModelManager",
    "Resident",
    "choose_evictions",
    "estimate_memory",
    "parse_keep_alive",
]

log = get_logger(__name__)

Loader = Callable[[Path, EngineConfig, ModelProfile], LLM]
Clock = Callable[[], float]


@dataclass(frozen=True)
class LoadedModelStatus:
    """One loaded model, for ``hearth ps`` and ``/api/ps``."""

    name: str
    model: LocalModel  # as loaded: still described if removed from the store meanwhile
    size_bytes: int  # the model (GGUF) file
    memory: MemoryEstimate  # what the budget charges it
    context: int  # tokens per sequence
    slots: int  # sequences it decodes together
    active_requests: int
    idle_seconds: float  # 0 while in use
    expires_in: float | None  # seconds until unloaded; None while in use or kept forever


@dataclass(frozen=True)
class Resident:
    """A model as the eviction choice sees it."""

    name: str
    memory: int
    last_used: float
    busy: bool  # in use or loading: never unloaded


def choose_evictions(residents: Sequence[Resident], need: int, budget: int) -> list[str] | None:
    """Idle models to unload, least recently used first, so that ``need`` more bytes fit.

    Returns the fewest such names (an empty list when the model fits already), or None when
    even unloading every idle model leaves too little room.
    """
    free = budget - sum(resident.memory for resident in residents)
    victims: list[str] = []
    idle = sorted((r for r in residents if not r.busy), key=lambda r: r.last_used)
    for resident in idle:
        if free >= need:
            break
        victims.append(resident.name)
        free += resident.memory
    return victims if free >= need else None


class _Slot:
    """A model that is loaded or loading. Mutable state is guarded by the manager's lock."""

    def __init__(
        self,
        model: LocalModel,
        profile: ModelProfile,
        config: EngineConfig,
        memory: MemoryEstimate,
        now: float,
    ) -> None:
        self.model = model
        self.profile = profile
        self.config = config  # the manager's, with the model's own num_ctx
        self.memory = memory
        self.future: Future[LLM] = Future()  # done when the load succeeds or fails
        self.llm: LLM | None = None  # set once loaded
        self.active = 0  # users holding it (and waiting for its load)
        self.last_used = now
        self.keep_alive = 0.0  # seconds; FOREVER never expires

    @property
    def name(self) -> str:
        return str(self.model.name)

    def resident(self) -> Resident:
        busy = self.active > 0 or self.llm is None
        return Resident(self.name, self.memory.total, self.last_used, busy)

    def expires_in(self, now: float) -> float | None:
        if self.active > 0 or self.keep_alive == FOREVER:
            return None
        return max(0.0, self.last_used + self.keep_alive - now)

    def expired(self, now: float) -> bool:
        remaining = self.expires_in(now)
        return self.llm is not None and remaining is not None and remaining <= 0


class ModelManager:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        loader: Loader = LLM,
        clock: Clock = time.monotonic,
    ) -> None:
        self.budget = settings.max_memory
        self.default_keep_alive = settings.keep_alive
        self.config = EngineConfig.from_settings(settings)
        self._store = store
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._reserved: dict[str, int] = {}  # memory held outside the manager (embedders)
        # By blob path and context: a blob's content never changes.
        self._estimates: dict[tuple[Path, int], MemoryEstimate] = {}
        self._closed = False
        self._stop_reaper = threading.Event()
        self._reaper: threading.Thread | None = None

    def __enter__(self) -> ModelManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Using models ------------------------------------------------------------------------------

    @contextmanager
    def acquire(self, name: str, *, keep_alive: float | None = None) -> Iterator[LLM]:
        """The loaded model ``name`` for the duration of the ``with`` block, loading it first.

        ``keep_alive``: seconds the model stays loaded once idle (see :func:`parse_keep_alive`);
        None means the default. Raises ModelNotFoundError, InsufficientMemoryError, or whatever
        the load raised (ModelLoadError).
        """
        slot, must_load = self._check_out(name, keep_alive)
        try:
            if must_load:
                self._load(slot)
            llm = slot.future.result()
        except BaseException:
            self._release(slot)
            raise
        try:
            yield llm
        finally:
            self._release(slot)

    @property
    def store(self) -> Store:
        return self._store

    def estimate(self, model: LocalModel, config: EngineConfig | None = None) -> MemoryEstimate:
        """What the budget charges ``model`` with this manager's engine settings (or
        ``config``: the model's own, see :meth:`config_for`)."""
        config = config or self.config
        key = (model.model_path, config.context)
        estimate = self._estimates.get(key)
        if estimate is None:  # two threads may both compute it: same answer, no harm
            estimate = estimate_memory(model, config)
            self._estimates[key] = estimate
        return estimate

    def config_for(self, profile: ModelProfile) -> EngineConfig:
        return self.config.for_profile(profile)

    # Status and housekeeping -----------------------------------------------------------------

    def loaded(self) -> list[LoadedModelStatus]:
        """Loaded models, most recently used first (models still loading are left out)."""
        with self._lock:
            now = self._clock()
            slots = sorted(self._slots.values(), key=lambda slot: -slot.last_used)
            return [
                _status(slot, slot.llm, slot.config.max_seqs, now)
                for slot in slots
                if slot.llm is not None
            ]

    def dead_engines(self) -> list[str]:
        """Loaded models whose engine thread has died (readiness checks)."""
        with self._lock:
            return [s.name for s in self._slots.values() if s.llm is not None and not s.llm.alive]

    def engine_stats(self) -> list[tuple[str, EngineStats]]:
        """Each loaded model's engine counters, for metrics."""
        with self._lock:
            engines = [(slot.name, slot.llm) for slot in self._slots.values() if slot.llm]
        return [(name, llm.stats()) for name, llm in engines]

    def expire(self) -> list[str]:
        """Unload idle models whose keep-alive has run out; return their names."""
        with self._lock:
            return self._unload_expired(self._clock())

    def unload(self, name: str) -> bool:
        """Unload ``name`` as soon as it is idle: now, or when its last user releases it (what
        Ollama does for a request with ``keep_alive: 0`` and no prompt). False if not loaded."""
        key = str(parse_name(name))
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                return False
            slot.keep_alive = 0.0
            self._unload_expired(self._clock())
            return True

    def users(self, name: str) -> int:
        """Requests holding ``name`` or waiting for its load; 0 when it is idle or not loaded
        (deleting a model through the server is refused while this is above 0)."""
        key = str(parse_name(name))
        with self._lock:
            slot = self._slots.get(key)
            return 0 if slot is None else slot.active

    def reserve(self, name: str, size: int) -> None:
        """Charge ``size`` bytes that ``name`` holds outside the manager (an embedding model) to
        the budget, unloading idle models to make room; InsufficientMemoryError if it cannot
        fit. Reserved memory is never unloaded by the manager: :meth:`unreserve` frees it."""
        with self._lock:
            self._unload_expired(self._clock())
            residents = self._residents()
            victims = choose_evictions(residents, size, self.budget)
            if victims is None:
                memory = MemoryEstimate(weights=size, kv_cache=0, compute=0, overhead=0)
                raise _insufficient(name, memory, self.budget, residents)
            for victim in victims:
                log.info("unloading %s to make room for %s", victim, name)
                self._unload(self._slots[victim])
            self._reserved[name] = size

    def unreserve(self, name: str) -> None:
        with self._lock:
            self._reserved.pop(name, None)

    def start_reaper(self, interval: float = 1.0) -> None:
        """Run :meth:`expire` every ``interval`` seconds on a daemon thread until :meth:`close`."""
        if self._reaper is not None:
            return
        self._reaper = threading.Thread(
            target=self._reap, args=(interval,), name="hearth-model-reaper", daemon=True
        )
        self._reaper.start()

    def close(self) -> None:
        """Stop the reaper and unload every model, in use or not."""
        self._stop_reaper.set()
        if self._reaper is not None:
            self._reaper.join()
        with self._lock:
            self._closed = True
            for slot in list(self._slots.values()):
                if slot.llm is not None:  # a load in flight closes its model when it finishes
                    self._unload(slot)

    # Internals ---------------------------------------------------------------------------------

    def _check_out(self, name: str, keep_alive: float | None) -> tuple[_Slot, bool]:
        """Count one more user of ``name``'s slot, creating (and making room for) it if needed;
        True means the caller must load it."""
        model = self._store.resolve(name)
        profile = self._store.profile(model)
        config = self.config_for(profile)
        memory = self.estimate(model, config)
        seconds = self._keep_alive(keep_alive)
        with self._lock:
            if self._closed:
                raise EngineError("the model manager is closed")
            now = self._clock()
            self._unload_expired(now)
            slot = self._current_slot(model)
            must_load = slot is None
            if slot is None:
                self._make_room(model, memory)
                slot = _Slot(model, profile, config, memory, now)
                self._slots[slot.name] = slot
            slot.active += 1
            slot.last_used = now
            slot.keep_alive = seconds
            return slot, must_load

    def _current_slot(self, model: LocalModel) -> _Slot | None:
        """The slot for ``model``; an idle one holding an older version (re-pulled) is dropped."""
        slot = self._slots.get(str(model.name))
        if slot is None or slot.model.manifest_digest == model.manifest_digest:
            return slot
        if slot.resident().busy:
            return slot  # requests in flight keep the old version until it is idle
        self._unload(slot)
        return None

    def _residents(self) -> list[Resident]:
        models = [slot.resident() for slot in self._slots.values()]
        held = [Resident(name, size, 0.0, busy=True) for name, size in self._reserved.items()]
        return models + held

    def _make_room(self, model: LocalModel, memory: MemoryEstimate) -> None:
        residents = self._residents()
        victims = choose_evictions(residents, memory.total, self.budget)
        if victims is None:
            raise _insufficient(str(model.name), memory, self.budget, residents)
        for victim in victims:
            log.info("unloading %s to make room for %s", victim, model.name)
            self._unload(self._slots[victim])

    def _load(self, slot: _Slot) -> None:
        """Load outside the lock; deliver the model or the error to every waiter."""
        log.info("loading %s (%s)", slot.name, format_size(slot.memory.total))
        try:
            llm = self._loader(slot.model.model_path, slot.config, slot.profile)
        except BaseException as error:
            with self._lock:
                self._forget(slot)  # not cached: the next request tries again
            slot.future.set_exception(error)
            return
        with self._lock:
            closed = self._closed
            if closed:
                self._forget(slot)
            else:
                slot.llm = llm
        if closed:
            llm.close()
            slot.future.set_exception(EngineError("the model manager closed during the load"))
        else:
            slot.future.set_result(llm)

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            slot.active -= 1
            now = self._clock()
            slot.last_used = now
            self._unload_expired(now)

    def _unload_expired(self, now: float) -> list[str]:
        expired = [slot for slot in self._slots.values() if slot.expired(now)]
        for slot in expired:
            log.info("keep-alive of %s expired; unloading it", slot.name)
            self._unload(slot)
        return [slot.name for slot in expired]

    def _unload(self, slot: _Slot) -> None:
        """Close a loaded model; caller holds the lock."""
        self._forget(slot)
        if slot.llm is None:
            return
        try:
            slot.llm.close()
        except Exception:
            log.exception("closing %s failed", slot.name)
        slot.llm = None

    def _forget(self, slot: _Slot) -> None:
        if self._slots.get(slot.name) is slot:
            del self._slots[slot.name]

    def _keep_alive(self, value: float | None) -> float:
        if value is None:
            return self.default_keep_alive
        seconds = parse_keep_alive(value)
        return self.default_keep_alive if seconds is None else seconds

    def _reap(self, interval: float) -> None:
        while not self._stop_reaper.wait(interval):
            try:
                self.expire()
            except Exception:
                log.exception("unloading expired models failed")


def _status(slot: _Slot, llm: LLM, max_seqs: int, now: float) -> LoadedModelStatus:
    return LoadedModelStatus(
        name=slot.name,
        model=slot.model,
        size_bytes=slot.memory.weights,
        memory=slot.memory,
        context=llm.context_length,
        slots=max_seqs,
        active_requests=slot.active,
        idle_seconds=0.0 if slot.active else max(0.0, now - slot.last_used),
        expires_in=slot.expires_in(now),
    )


def _insufficient(
    name: str, memory: MemoryEstimate, budget: int, residents: Sequence[Resident]
) -> InsufficientMemoryError:
    busy = [resident for resident in residents if resident.busy]
    in_use = sum(resident.memory for resident in busy)
    message = (
        f"{name} needs {format_size(memory.total)} of memory (weights "
        f"{format_size(memory.weights)}, KV cache {format_size(memory.kv_cache)}, compute "
        f"{format_size(memory.compute + memory.overhead)}) but the budget is "
        f"{format_size(budget)} (HEARTH_MAX_MEMORY)"
    )
    if busy:
        names = ", ".join(resident.name for resident in busy)
        message += f", of which models in use hold {format_size(in_use)} ({names})"
    if memory.kv_cache > memory.weights:
        message += "; a smaller HEARTH_CONTEXT or HEARTH_MAX_SEQS shrinks the KV cache"
    return InsufficientMemoryError(message, need=memory.total, budget=budget, in_use=in_use)
