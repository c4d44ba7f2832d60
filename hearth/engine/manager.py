"""The model manager: which models are loaded, under a memory budget, and for how long.

A server answers for many models but a machine holds only some of them. :class:`ModelManager`
loads a model on its first request, keeps it while requests use it and for a keep-alive
afterwards, and unloads idle models, least recently used first, when a new one needs room.

Models that share a base share its load: a :class:`BaseModel` is loaded once per model file and
engine config (the context a Modelfile's ``num_ctx`` sets is part of it), and every model name
on it (the base itself, Modelfile variants, fine-tuned adapters) is a :class:`ModelView` of it
with its own profile and adapter set (see docs/ADAPTERS.md). A name's view opens on its first
request (loading its adapters, milliseconds) and closes when its keep-alive runs out (freeing
adapters nobody else uses); the base unloads when its last view has closed.

Memory: every base is charged its :func:`estimate_memory` (weights + KV cache + compute
buffers + overhead), plus the files of the adapters its views use, before it loads, against
``HEARTH_MAX_MEMORY`` (default half the RAM). A model that does not fit even after every idle
model is unloaded is refused with :class:`InsufficientMemoryError`: models in use are never
unloaded. A model being loaded counts as in use, so its memory is reserved from the moment the
manager decides to load it.

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
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from hearth.config import Settings
from hearth.engine.base_model import BaseModel, EngineConfig
from hearth.engine.engine import EngineStats
from hearth.engine.llm import ModelView
from hearth.engine.memory import MemoryEstimate, estimate_memory
from hearth.engine.slots import BaseSlot, ModelEntry, Resident, choose_evictions
from hearth.errors import EngineError, InsufficientMemoryError, ModelLoadError
from hearth.log import get_logger
from hearth.modelfile.params import draft_model_name
from hearth.store.names import parse_name
from hearth.store.profile import ModelProfile
from hearth.store.store import LocalModel, Store
from hearth.units import format_size, parse_keep_alive

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

Loader = Callable[[Path, EngineConfig], BaseModel]
Clock = Callable[[], float]


@dataclass(frozen=True)
class LoadedModelStatus:
    """One loaded model name, for ``hearth ps`` and ``/api/ps``. Names on the same base share
    its memory: ``memory`` is the base's (with every adapter loaded on it), ``base`` says which."""

    name: str
    model: LocalModel  # as loaded: still described if removed from the store meanwhile
    size_bytes: int  # the model (GGUF) file and this model's adapter files
    memory: MemoryEstimate  # what the budget charges the base this model runs on
    context: int  # tokens per sequence
    slots: int  # sequences it decodes together
    active_requests: int
    idle_seconds: float  # 0 while in use
    expires_in: float | None  # seconds until unloaded; None while in use or kept forever
    base: str = ""  # the loaded base (named after the model that loaded it)
    adapters: tuple[Path, ...] = ()  # this model's LoRA adapter files


@dataclass(frozen=True)
class _CheckOut:
    slot: BaseSlot
    entry: ModelEntry
    must_open: bool  # the entry is new: this caller opens its view
    must_load: bool  # its base's slot is new too: this caller loads the base


class ModelManager:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        loader: Loader = BaseModel,
        clock: Clock = time.monotonic,
    ) -> None:
        self.budget = settings.max_memory
        self.default_keep_alive = settings.keep_alive
        self.config = EngineConfig.from_settings(settings)
        self._store = store
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[tuple[Path, EngineConfig], BaseSlot] = {}
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
    def acquire(self, name: str, *, keep_alive: float | None = None) -> Iterator[ModelView]:
        """The model ``name`` for the duration of the ``with`` block, loading it first (its
        base, unless another model on the same base has loaded it, and its adapters).

        ``keep_alive``: seconds the model stays loaded once idle (see :func:`parse_keep_alive`);
        None means the default. Raises ModelNotFoundError, InsufficientMemoryError, or whatever
        the load raised (ModelLoadError).
        """
        out = self._check_out(name, keep_alive)
        entry = out.entry
        try:
            if out.must_open:
                self._open(out.slot, entry, out.must_load)
            view = entry.future.result()
        except BaseException:
            self._release(entry)
            raise
        try:
            yield view
        finally:
            self._release(entry)

    @property
    def store(self) -> Store:
        return self._store

    def estimate(self, model: LocalModel, config: EngineConfig | None = None) -> MemoryEstimate:
        """What the budget charges ``model``'s base with this manager's engine settings (or
        ``config``: the model's own, see :meth:`config_for`); its adapters come on top."""
        config = config or self.config
        key = (model.model_path, config.context)
        estimate = self._estimates.get(key)
        if estimate is None:  # two threads may both compute it: same answer, no harm
            estimate = estimate_memory(model, config)
            self._estimates[key] = estimate
        return estimate

    def config_for(self, profile: ModelProfile) -> EngineConfig:
        config = self.config.for_profile(profile)
        draft = draft_model_name(profile.parameters)  # PARAMETER speculative draft:<model>
        if draft is None:
            return config
        return replace(config, draft_model=self._store.resolve(draft).model_path)

    # Status and housekeeping -----------------------------------------------------------------

    def loaded(self) -> list[LoadedModelStatus]:
        """Loaded models, most recently used first (models still loading are left out)."""
        with self._lock:
            now = self._clock()
            statuses = [
                (entry.last_used, _status(slot, entry, slot.base, now))
                for slot in self._slots.values()
                if slot.base is not None
                for entry in slot.entries.values()
                if entry.view is not None
            ]
        return [status for _, status in sorted(statuses, key=lambda pair: -pair[0])]

    def dead_engines(self) -> list[str]:
        """Loaded models whose engine thread has died (readiness checks)."""
        with self._lock:
            return [
                name
                for slot in self._slots.values()
                if slot.base is not None and not slot.base.alive
                for name in slot.entries
            ]

    def engine_stats(self) -> list[tuple[str, EngineStats]]:
        """Each loaded base's engine counters, for metrics (named after the model that loaded
        it: the models on one base share one engine)."""
        with self._lock:
            engines = [(slot.label, slot.base) for slot in self._slots.values() if slot.base]
        return [(label, base.stats()) for label, base in engines]

    def expire(self) -> list[str]:
        """Close idle models whose keep-alive has run out; return their names."""
        with self._lock:
            return self._unload_expired(self._clock())

    def unload(self, name: str) -> bool:
        """Unload ``name`` as soon as it is idle: now, or when its last user releases it (what
        Ollama does for a request with ``keep_alive: 0`` and no prompt). Its base stays while
        other models use it. False if not loaded."""
        key = str(parse_name(name))
        with self._lock:
            found = self._find(key)
            if found is None:
                return False
            found[1].keep_alive = 0.0
            self._unload_expired(self._clock())
            return True

    def users(self, name: str) -> int:
        """Requests holding ``name`` or waiting for its load; 0 when it is idle or not loaded
        (deleting a model through the server is refused while this is above 0)."""
        key = str(parse_name(name))
        with self._lock:
            found = self._find(key)
            return 0 if found is None else found[1].active

    def reserve(self, name: str, size: int) -> None:
        """Charge ``size`` bytes that ``name`` holds outside the manager (an embedding model) to
        the budget, unloading idle models to make room; InsufficientMemoryError if it cannot
        fit. Reserved memory is never unloaded by the manager: :meth:`unreserve` frees it."""
        with self._lock:
            self._unload_expired(self._clock())
            memory = MemoryEstimate(weights=size, kv_cache=0, compute=0, overhead=0)
            self._make_room(name, memory)
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
                if slot.base is not None:  # a load in flight closes its model when it finishes
                    self._unload(slot)

    # Internals: checking out -------------------------------------------------------------------

    def _check_out(self, name: str, keep_alive: float | None) -> _CheckOut:
        """Count one more user of ``name``, creating its entry (and its base's slot, making room
        for them) if needed; the caller must then open the entry (and load the base)."""
        model = self._store.resolve(name)
        profile = self._store.profile(model)
        config = self.config_for(profile)
        memory = self.estimate(model, config)
        adapter_sizes = {path: path.stat().st_size for path in profile.adapters}
        seconds = self._keep_alive(keep_alive)
        with self._lock:
            if self._closed:
                raise EngineError("the model manager is closed")
            now = self._clock()
            self._unload_expired(now)
            self._drop_dead((model.model_path, config))
            found = self._current(model, (model.model_path, config))
            must_open = found is None
            must_load = False
            if found is None:
                must_load = (model.model_path, config) not in self._slots
                found = self._add_entry(model, profile, config, memory, adapter_sizes, now)
            slot, entry = found
            entry.active += 1
            entry.last_used = now
            entry.keep_alive = seconds
            return _CheckOut(slot, entry, must_open, must_load)

    def _drop_dead(self, key: tuple[Path, EngineConfig]) -> None:
        """Unload a base whose engine thread has died, so this request loads it afresh; while
        its failed requests still hold it, refuse (they end at once, so a retry succeeds)."""
        slot = self._slots.get(key)
        if slot is None or slot.base is None or slot.base.alive:
            return
        if any(entry.busy for entry in slot.entries.values()):
            raise EngineError(f"the engine of {slot.label} stopped and is reloading; retry")
        log.warning("the engine of %s stopped; loading it again", slot.label)
        self._unload(slot)

    def _current(
        self, model: LocalModel, key: tuple[Path, EngineConfig]
    ) -> tuple[BaseSlot, ModelEntry] | None:
        """The entry for ``model``'s name; an idle one holding an older version (re-pulled or
        re-created) is closed."""
        found = self._find(str(model.name))
        if found is None:
            return None
        slot, entry = found
        if entry.model.manifest_digest == model.manifest_digest or entry.busy:
            return found  # requests in flight keep the old version until it is idle
        self._close_entry(slot, entry)
        if not slot.entries and slot.key != key:
            self._unload(slot)
        return None

    def _add_entry(
        self,
        model: LocalModel,
        profile: ModelProfile,
        config: EngineConfig,
        memory: MemoryEstimate,
        adapter_sizes: dict[Path, int],
        now: float,
    ) -> tuple[BaseSlot, ModelEntry]:
        key = (model.model_path, config)
        slot = self._slots.get(key)
        if slot is None:
            adapters = sum(adapter_sizes.values())
            needed = MemoryEstimate(
                memory.weights + adapters, memory.kv_cache, memory.compute, memory.overhead
            )
            self._make_room(str(model.name), needed)
            slot = BaseSlot(key, self._unique_label(str(model.name)), memory, now)
            self._slots[key] = slot
        else:
            extra = slot.new_adapter_bytes(adapter_sizes)
            if extra:
                adapters_only = MemoryEstimate(weights=extra, kv_cache=0, compute=0, overhead=0)
                self._make_room(str(model.name), adapters_only, keep=slot)
        entry = ModelEntry(model, profile, adapter_sizes, now)
        slot.entries[entry.name] = entry
        return slot, entry

    def _find(self, name: str) -> tuple[BaseSlot, ModelEntry] | None:
        for slot in self._slots.values():
            entry = slot.entries.get(name)
            if entry is not None:
                return slot, entry
        return None

    def _unique_label(self, name: str) -> str:
        labels = {slot.label for slot in self._slots.values()}
        label, n = name, 1
        while label in labels:
            n += 1
            label = f"{name} ({n})"
        return label

    def _residents(self, keep: BaseSlot | None = None) -> list[Resident]:
        models = [slot.resident(busy=slot is keep) for slot in self._slots.values()]
        held = [Resident(name, size, 0.0, busy=True) for name, size in self._reserved.items()]
        return models + held

    def _make_room(self, name: str, memory: MemoryEstimate, keep: BaseSlot | None = None) -> None:
        """Unload idle bases, least recently used first, until ``memory`` fits (``keep`` stays)."""
        residents = self._residents(keep)
        victims = choose_evictions(residents, memory.total, self.budget)
        if victims is None:
            raise _insufficient(name, memory, self.budget, residents)
        by_label = {slot.label: slot for slot in self._slots.values()}
        for victim in victims:
            log.info("unloading %s to make room for %s", victim, name)
            self._unload(by_label[victim])

    # Internals: opening and closing --------------------------------------------------------------

    def _open(self, slot: BaseSlot, entry: ModelEntry, must_load: bool) -> None:
        """Load the base (when this caller created its slot), then open the entry's view,
        outside the lock; deliver the view or the error to every waiter of the entry."""
        try:
            if must_load:
                self._load(slot)
            base = slot.future.result()
            view = _open_view(entry, base)
        except BaseException as error:
            with self._lock:
                self._forget_entry(slot, entry)
            entry.future.set_exception(error)
            return
        with self._lock:
            opened = not self._closed and slot.entries.get(entry.name) is entry
            if opened:
                entry.view = view
        if opened:
            entry.future.set_result(view)
        else:
            view.release()
            entry.future.set_exception(EngineError("the model manager closed during the load"))

    def _load(self, slot: BaseSlot) -> None:
        """Load the base outside the lock; deliver it or the error to the slot's waiters."""
        log.info("loading %s (%s)", slot.label, format_size(slot.memory.total))
        path, config = slot.key
        try:
            base = self._loader(path, config)
        except BaseException as error:
            with self._lock:
                self._forget_slot(slot)  # not cached: the next request tries again
            slot.future.set_exception(error)
            return
        with self._lock:
            closed = self._closed
            if closed:
                self._forget_slot(slot)
            else:
                slot.base = base
        if closed:
            base.close()
            slot.future.set_exception(EngineError("the model manager closed during the load"))
        else:
            slot.future.set_result(base)

    def _release(self, entry: ModelEntry) -> None:
        with self._lock:
            entry.active -= 1
            now = self._clock()
            entry.last_used = now
            self._unload_expired(now)

    def _unload_expired(self, now: float) -> list[str]:
        """Close expired models; unload bases left with none."""
        closed = []
        for slot in list(self._slots.values()):
            for entry in [e for e in slot.entries.values() if e.expired(now)]:
                log.info("keep-alive of %s expired; unloading it", entry.name)
                self._close_entry(slot, entry)
                closed.append(entry.name)
            if slot.base is not None and not slot.entries:
                self._unload(slot)
        return closed

    def _close_entry(self, slot: BaseSlot, entry: ModelEntry) -> None:
        """Drop a model from its base and let its adapters go; caller holds the lock."""
        self._forget_entry(slot, entry)
        if entry.view is not None:
            try:
                entry.view.release()  # frees adapters no other model or request uses
            except Exception:
                log.exception("releasing the adapters of %s failed", entry.name)
            entry.view = None

    def _unload(self, slot: BaseSlot) -> None:
        """Close a loaded base and every model on it; caller holds the lock."""
        self._forget_slot(slot)
        for entry in list(slot.entries.values()):
            entry.view = None  # the base frees their adapters with it
        slot.entries.clear()
        if slot.base is None:
            return
        try:
            slot.base.close()
        except Exception:
            log.exception("closing %s failed", slot.label)
        slot.base = None

    def _forget_entry(self, slot: BaseSlot, entry: ModelEntry) -> None:
        if slot.entries.get(entry.name) is entry:
            del slot.entries[entry.name]

    def _forget_slot(self, slot: BaseSlot) -> None:
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]

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


def _open_view(entry: ModelEntry, base: BaseModel) -> ModelView:
    """The entry's view of ``base``: loads its adapters (milliseconds)."""
    try:
        return ModelView(base, entry.profile)
    except ModelLoadError as error:  # say which model: the adapter's file is a blob name
        raise ModelLoadError(f"{entry.name}: {error}") from None


def _status(slot: BaseSlot, entry: ModelEntry, base: BaseModel, now: float) -> LoadedModelStatus:
    return LoadedModelStatus(
        name=entry.name,
        model=entry.model,
        size_bytes=slot.memory.weights + sum(entry.adapter_sizes.values()),
        memory=slot.total_memory(),
        context=base.context_length,
        slots=slot.config.max_seqs,
        active_requests=entry.active,
        idle_seconds=0.0 if entry.active else max(0.0, now - entry.last_used),
        expires_in=entry.expires_in(now),
        base=slot.label,
        adapters=entry.profile.adapters,
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
