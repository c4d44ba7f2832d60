"""The model manager with real llama.cpp models: tiny GGUFs in a store at a temporary home."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.engine.llm import BaseModel, EngineConfig, ModelView
from hearth.engine.manager import ModelManager
from hearth.engine.memory import MemoryEstimate
from hearth.engine.sampling import SamplingParams
from hearth.errors import EngineError, InsufficientMemoryError, ModelLoadError, ModelNotFoundError
from hearth.store import Store

NAMES = ("tiny-a", "tiny-b", "tiny-c")
THREADS = 8


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingLoader:
    """Loads real models, counting loads per file; can be told to fail or to be slow."""

    def __init__(self, delay: float = 0.0, failures: int = 0) -> None:
        self.delay = delay
        self.failures = failures
        self.loads: list[Path] = []
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, path: Path, config: EngineConfig) -> BaseModel:
        with self._lock:
            self.loads.append(path)
            fail = self.failures > 0
            self.failures -= 1
        self.started.set()
        time.sleep(self.delay)
        if fail:
            raise ModelLoadError(f"llama.cpp could not load {path} (injected)")
        return BaseModel(path, config)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("manager-models")
    return [
        write_tiny_gguf(folder / f"{name}.gguf", TinyModelSpec(seed=seed, name=name))
        for seed, name in enumerate(NAMES)
    ]


def make_settings(home: Path, **env: str) -> Settings:
    base = {
        "HEARTH_HOME": str(home),
        "HEARTH_THREADS": "1",
        "HEARTH_CONTEXT": "256",
        "HEARTH_MAX_SEQS": "2",
        "HEARTH_BATCH": "64",
    }
    return Settings.from_env(base | env)


@pytest.fixture
def store(hearth_home: Path, model_files: list[Path]) -> Store:
    store = Store(make_settings(hearth_home))
    for name, path in zip(NAMES, model_files, strict=True):
        store.import_gguf(path, name)
    return store


@pytest.fixture
def one_model(store: Store, hearth_home: Path) -> MemoryEstimate:
    """What one tiny model costs; the three are the same size."""
    with ModelManager(store, make_settings(hearth_home)) as manager:
        return manager.estimate(store.resolve("tiny-a"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def loader() -> CountingLoader:
    return CountingLoader()


@pytest.fixture
def manager(
    store: Store,
    hearth_home: Path,
    one_model: MemoryEstimate,
    loader: CountingLoader,
    clock: FakeClock,
) -> Iterator[ModelManager]:
    """Room for two tiny models, not three."""
    budget = str(int(one_model.total * 2.5))
    settings = make_settings(hearth_home, HEARTH_MAX_MEMORY=budget)
    with ModelManager(store, settings, loader=loader, clock=clock) as manager:
        yield manager


def use(manager: ModelManager, name: str, keep_alive: float | None = None) -> None:
    with manager.acquire(name, keep_alive=keep_alive) as llm:
        params = SamplingParams(temperature=0, max_tokens=2)
        assert llm.complete("hi", params).text() is not None


def loaded_names(manager: ModelManager) -> list[str]:
    return [status.name for status in manager.loaded()]


def test_acquire_loads_once_and_reports_status(
    manager: ModelManager, loader: CountingLoader, clock: FakeClock, one_model: MemoryEstimate
) -> None:
    use(manager, "tiny-a")
    clock.advance(10)
    use(manager, "tiny-a")
    assert len(loader.loads) == 1
    clock.advance(20)
    [status] = manager.loaded()
    assert status.name == "tiny-a:latest"
    assert status.memory == one_model
    assert status.size_bytes > 0
    assert status.context == 256
    assert status.slots == 2
    assert status.active_requests == 0
    assert status.idle_seconds == pytest.approx(20)
    assert status.expires_in == pytest.approx(300 - 20)


def test_status_while_in_use(manager: ModelManager, clock: FakeClock) -> None:
    with manager.acquire("tiny-a"), manager.acquire("tiny-a"):
        clock.advance(1000)
        [status] = manager.loaded()
        assert status.active_requests == 2
        assert status.idle_seconds == 0
        assert status.expires_in is None
    [status] = manager.loaded()
    assert status.active_requests == 0


def test_least_recently_used_idle_model_makes_room(
    manager: ModelManager, loader: CountingLoader, clock: FakeClock
) -> None:
    for name in ("tiny-a", "tiny-b"):
        use(manager, name)
        clock.advance(1)
    assert loaded_names(manager) == ["tiny-b:latest", "tiny-a:latest"]
    use(manager, "tiny-c")  # no room for three: a, used longest ago, goes
    assert loaded_names(manager) == ["tiny-c:latest", "tiny-b:latest"]
    clock.advance(1)
    use(manager, "tiny-b")  # b is now the most recent, so c goes next
    clock.advance(1)
    use(manager, "tiny-a")
    assert loaded_names(manager) == ["tiny-a:latest", "tiny-b:latest"]
    assert len(loader.loads) == 4


def test_models_in_use_are_never_unloaded(manager: ModelManager, clock: FakeClock) -> None:
    with manager.acquire("tiny-a") as held:
        clock.advance(1)
        use(manager, "tiny-b")
        use(manager, "tiny-c")  # b is idle and goes; a is busy and stays
        assert set(loaded_names(manager)) == {"tiny-a:latest", "tiny-c:latest"}
        with manager.acquire("tiny-c"), pytest.raises(InsufficientMemoryError) as caught:
            manager.acquire("tiny-b").__enter__()
        assert "tiny-b:latest needs" in str(caught.value)
        assert "tiny-a:latest" in str(caught.value) and "tiny-c:latest" in str(caught.value)
        assert caught.value.in_use > 0
        # a still answers
        assert held.complete("hi", SamplingParams(temperature=0, max_tokens=2)).text() is not None
    use(manager, "tiny-b")  # a and c are idle again: one of them makes room


def test_model_larger_than_the_budget_fails_clearly(
    store: Store, hearth_home: Path, one_model: MemoryEstimate, loader: CountingLoader
) -> None:
    settings = make_settings(hearth_home, HEARTH_MAX_MEMORY=str(one_model.total // 2))
    manager = ModelManager(store, settings, loader=loader)
    with pytest.raises(InsufficientMemoryError) as caught, manager.acquire("tiny-a"):
        pass
    manager.close()
    error = caught.value
    assert error.need == one_model.total
    assert error.budget == one_model.total // 2
    message = str(error)
    assert "tiny-a:latest needs" in message and "budget is" in message
    assert "HEARTH_MAX_MEMORY" in message
    assert "\n" not in message
    assert loader.loads == []  # refused before loading anything


def test_keep_alive_zero_unloads_on_release(manager: ModelManager) -> None:
    with manager.acquire("tiny-a", keep_alive=0):
        assert loaded_names(manager) == ["tiny-a:latest"]
    assert manager.loaded() == []


def test_keep_alive_forever_never_expires(manager: ModelManager, clock: FakeClock) -> None:
    use(manager, "tiny-a", keep_alive=-1)
    clock.advance(10**9)
    assert manager.expire() == []
    [status] = manager.loaded()
    assert status.expires_in is None
    assert status.idle_seconds == pytest.approx(10**9)


def test_default_keep_alive_expires_with_the_clock(manager: ModelManager, clock: FakeClock) -> None:
    use(manager, "tiny-a")
    use(manager, "tiny-b", keep_alive=60)
    clock.advance(59)
    assert manager.expire() == []
    clock.advance(2)
    assert manager.expire() == ["tiny-b:latest"]
    clock.advance(300 - 61 - 1)
    assert manager.expire() == []
    clock.advance(1)
    assert manager.expire() == ["tiny-a:latest"]
    assert manager.loaded() == []


def test_a_request_without_keep_alive_resets_to_the_default(
    manager: ModelManager, clock: FakeClock
) -> None:
    use(manager, "tiny-a", keep_alive=-1)
    use(manager, "tiny-a")  # as in Ollama: the latest request's keep-alive wins
    clock.advance(301)
    assert manager.expire() == ["tiny-a:latest"]


def test_acquire_expires_idle_models_too(manager: ModelManager, clock: FakeClock) -> None:
    use(manager, "tiny-a", keep_alive=5)
    clock.advance(6)
    use(manager, "tiny-b")
    assert loaded_names(manager) == ["tiny-b:latest"]


def test_unload_now_or_when_idle(manager: ModelManager) -> None:
    use(manager, "tiny-a")
    assert manager.unload("tiny-a")
    assert manager.loaded() == []
    assert not manager.unload("tiny-a")
    with manager.acquire("tiny-b"):
        assert manager.unload("tiny-b")
        assert loaded_names(manager) == ["tiny-b:latest"]  # busy: unloads on release
    assert manager.loaded() == []


def acquire_from_threads(
    manager: ModelManager, name: str
) -> tuple[list[ModelView], list[BaseException]]:
    models: list[ModelView] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker() -> None:
        start.wait()
        try:
            with manager.acquire(name) as llm:
                models.append(llm)
                time.sleep(0.05)  # overlap with the other users
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return models, errors


def test_concurrent_acquire_loads_once(manager: ModelManager, loader: CountingLoader) -> None:
    loader.delay = 0.2  # every thread arrives while the first one is loading
    models, errors = acquire_from_threads(manager, "tiny-a")
    assert errors == []
    assert len(models) == THREADS
    assert len({id(llm) for llm in models}) == 1
    assert len(loader.loads) == 1
    [status] = manager.loaded()
    assert status.active_requests == 0


def test_failed_load_reaches_every_waiter_and_is_retried(
    manager: ModelManager, loader: CountingLoader
) -> None:
    loader.delay = 0.2
    loader.failures = 1
    models, errors = acquire_from_threads(manager, "tiny-a")
    assert models == []
    assert len(errors) == THREADS
    assert all(isinstance(error, ModelLoadError) for error in errors)
    assert len(loader.loads) == 1
    assert manager.loaded() == []
    loader.delay = 0
    use(manager, "tiny-a")  # the failure was not cached
    assert len(loader.loads) == 2
    assert loaded_names(manager) == ["tiny-a:latest"]


def test_many_threads_many_models_stay_within_the_budget(manager: ModelManager) -> None:
    failures: list[BaseException] = []
    refused = 0
    lock = threading.Lock()

    def worker(index: int) -> None:
        nonlocal refused
        for round_ in range(8):
            name = NAMES[(index + round_) % len(NAMES)]
            try:
                with manager.acquire(name) as llm:
                    in_memory = sum(status.memory.total for status in manager.loaded())
                    assert in_memory <= manager.budget
                    llm.complete("hi", SamplingParams(temperature=0, max_tokens=2)).text()
            except InsufficientMemoryError:
                with lock:
                    refused += 1  # two other models were busy at that moment
            except BaseException as error:
                failures.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert refused < 6 * 8
    statuses = manager.loaded()
    assert len(statuses) <= 2
    assert all(status.active_requests == 0 for status in statuses)


def test_a_repulled_model_is_reloaded_when_idle(
    manager: ModelManager, store: Store, loader: CountingLoader, tmp_path: Path
) -> None:
    use(manager, "tiny-a")
    newer = write_tiny_gguf(tmp_path / "newer.gguf", TinyModelSpec(seed=9, name="tiny-a"))
    store.import_gguf(newer, "tiny-a")
    use(manager, "tiny-a")
    assert len(loader.loads) == 2
    assert loader.loads[0] != loader.loads[1]
    assert loaded_names(manager) == ["tiny-a:latest"]


def test_unknown_model(manager: ModelManager) -> None:
    with pytest.raises(ModelNotFoundError), manager.acquire("tiny-z"):
        pass


def test_reaper_unloads_in_the_background(manager: ModelManager, clock: FakeClock) -> None:
    use(manager, "tiny-a", keep_alive=30)
    manager.start_reaper(interval=0.01)
    clock.advance(31)
    deadline = time.monotonic() + 10
    while manager.loaded() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert manager.loaded() == []


def test_close_unloads_everything_and_refuses_new_work(
    manager: ModelManager, clock: FakeClock
) -> None:
    manager.start_reaper(interval=0.01)
    use(manager, "tiny-a", keep_alive=-1)
    use(manager, "tiny-b", keep_alive=-1)
    manager.close()
    assert manager.loaded() == []
    assert not any(t.name == "hearth-model-reaper" for t in threading.enumerate())
    with pytest.raises(EngineError, match="closed"), manager.acquire("tiny-a"):
        pass
    manager.close()  # twice is fine


def test_reserved_memory_counts_against_the_budget(
    manager: ModelManager, clock: FakeClock, one_model: MemoryEstimate
) -> None:
    use(manager, "tiny-a")
    clock.advance(1)
    use(manager, "tiny-b")
    # An embedding model the size of one chat model: the idle a (least recent) makes room.
    manager.reserve("minilm (embeddings)", one_model.total)
    assert loaded_names(manager) == ["tiny-b:latest"]
    with pytest.raises(InsufficientMemoryError, match="too-big needs"):
        manager.reserve("too-big", one_model.total * 2)
    with manager.acquire("tiny-c"):  # b goes; the reservation is never unloaded
        assert loaded_names(manager) == ["tiny-c:latest"]
        with pytest.raises(InsufficientMemoryError, match="minilm"):
            manager.acquire("tiny-a").__enter__()
    manager.unreserve("minilm (embeddings)")
    use(manager, "tiny-a")
    assert set(loaded_names(manager)) == {"tiny-a:latest", "tiny-c:latest"}


class EngineKilled(BaseException):
    """Not an Exception: it ends the engine thread, as a fatal error inside a step would."""


def test_a_dead_engine_fails_its_requests_fast_and_reloads(
    manager: ModelManager, loader: CountingLoader
) -> None:
    params = SamplingParams(temperature=0, max_tokens=4)
    with manager.acquire("tiny-a") as llm:
        thread = llm.base.thread

        def killed(output: object) -> dict[int, list[int]]:
            raise EngineKilled

        thread.engine.runner.execute = killed  # type: ignore[method-assign]
        with pytest.raises(EngineError, match="stopped"):
            llm.complete("hi", params).text()  # in flight when the thread died
        deadline = time.monotonic() + 10
        while llm.base.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not llm.base.alive
        assert manager.dead_engines() == ["tiny-a:latest"]  # readiness turns 503
        with pytest.raises(EngineError, match="reloaded on the next request"):
            llm.complete("hi", params).text()  # submitted after: fails at once, never hangs
        with pytest.raises(EngineError, match="reloading"):
            manager.acquire("tiny-a").__enter__()  # its failed requests still hold it

    use(manager, "tiny-a")  # loaded afresh
    assert len(loader.loads) == 2
    assert manager.dead_engines() == []
