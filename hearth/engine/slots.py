"""The model manager's table: loaded base models (slots) and the named models served by each.

Pure bookkeeping, guarded by the manager's lock: no llama.cpp call happens here. A
:class:`BaseSlot` is one :class:`BaseModel` (loaded or loading), keyed by the model file and
the engine config; a :class:`ModelEntry` is one model name on it, with its profile (adapters,
template, defaults), its users and its keep-alive. The memory a slot holds is its base's
estimate plus the files of the adapters its entries use.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from hearth.engine.base_model import BaseModel, EngineConfig
from hearth.engine.llm import ModelView
from hearth.engine.memory import MemoryEstimate
from hearth.store.profile import ModelProfile
from hearth.store.store import LocalModel
from hearth.units import FOREVER

SlotKey = tuple[Path, EngineConfig]  # one loaded base per model file and engine config


@dataclass(frozen=True)
class Resident:
    """A loaded base model as the eviction choice sees it."""

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


class ModelEntry:
    """A model name served by a slot's base: loaded (``view`` set) or opening."""

    def __init__(
        self, model: LocalModel, profile: ModelProfile, adapter_sizes: dict[Path, int], now: float
    ) -> None:
        self.model = model
        self.profile = profile
        self.adapter_sizes = adapter_sizes  # bytes of each adapter file
        self.future: Future[ModelView] = Future()  # done when the view opens or fails
        self.view: ModelView | None = None
        self.active = 0  # users holding it (and waiting for it to open)
        self.last_used = now
        self.keep_alive = 0.0  # seconds; FOREVER never expires

    @property
    def name(self) -> str:
        return str(self.model.name)

    @property
    def busy(self) -> bool:
        return self.active > 0 or self.view is None

    def expires_in(self, now: float) -> float | None:
        if self.active > 0 or self.keep_alive == FOREVER:
            return None
        return max(0.0, self.last_used + self.keep_alive - now)

    def expired(self, now: float) -> bool:
        remaining = self.expires_in(now)
        return self.view is not None and remaining is not None and remaining <= 0


class BaseSlot:
    """A base model that is loaded or loading, and the model names it serves."""

    def __init__(self, key: SlotKey, label: str, memory: MemoryEstimate, now: float) -> None:
        self.key = key
        self.label = label  # the name that loaded it: how status and metrics call it
        self.memory = memory  # the base alone
        self.future: Future[BaseModel] = Future()  # done when the load succeeds or fails
        self.base: BaseModel | None = None  # set once loaded
        self.entries: dict[str, ModelEntry] = {}
        self.created = now

    @property
    def config(self) -> EngineConfig:
        return self.key[1]

    @property
    def active(self) -> int:
        return sum(entry.active for entry in self.entries.values())

    @property
    def last_used(self) -> float:
        return max((entry.last_used for entry in self.entries.values()), default=self.created)

    def adapter_bytes(self, extra: dict[Path, int] | None = None) -> int:
        """Bytes of the distinct adapter files its models use (and ``extra`` ones)."""
        sizes = dict(extra or {})
        for entry in self.entries.values():
            sizes.update(entry.adapter_sizes)
        return sum(sizes.values())

    def new_adapter_bytes(self, adapter_sizes: dict[Path, int]) -> int:
        """What adding a model with these adapters would add to the slot's memory."""
        return self.adapter_bytes(adapter_sizes) - self.adapter_bytes()

    def total_memory(self) -> MemoryEstimate:
        """The base's estimate with its adapters counted as weights."""
        return replace(self.memory, weights=self.memory.weights + self.adapter_bytes())

    def resident(self, *, busy: bool = False) -> Resident:
        busy = busy or self.base is None or any(e.busy for e in self.entries.values())
        return Resident(self.label, self.total_memory().total, self.last_used, busy)
