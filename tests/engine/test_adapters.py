"""Many adapters on one loaded base: the scheduler's adapter turns (pure) and the manager
serving a base and two LoRA fine-tunes of it from one load (real llama.cpp, tiny models)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_lora
from hearth.engine.engine import Generation
from hearth.engine.llm import LLM, EngineConfig, ModelView
from hearth.engine.manager import ModelManager
from hearth.engine.request import AdapterSet, Request, RequestStatus
from hearth.engine.runner import DECODE_LOCK
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler, SchedulerConfig
from hearth.errors import ModelLoadError
from hearth.modelfile.create import create_model
from hearth.modelfile.parse import parse_modelfile
from hearth.store import Store
from hearth.store.profile import ModelProfile
from tests.engine.test_manager import CountingLoader
from tests.greedy import decided_tokens

A: AdapterSet = (Path("/adapters/a.gguf"),)
B: AdapterSet = (Path("/adapters/b.gguf"),)
MARGIN = 0.01  # the tiny model's logprobs move about 1e-3 with the batch around them
NO_EOS = ((2, -100.0),)  # the tiny model's </s>: answers run to max_tokens
GREEDY = SamplingParams(temperature=0, max_tokens=12, logprobs=2, logit_bias=NO_EOS)
PROMPTS = ["adapters share a base", "one load, many models", "the quick brown fox", "LoRA"]


# -- the scheduler: one adapter set per step, sets take turns ------------------------------------


def make_request(i: int, n: int, adapters: AdapterSet = (), key: str = "") -> Request:
    params = SamplingParams(temperature=0)
    return Request(prompt_tokens=[i] * n, params=params, adapters=adapters, cache_key=key)


def step(scheduler: Scheduler, token: int = 7) -> AdapterSet:
    """One step with made-up samples; every chunk must be computed with the step's set."""
    output = scheduler.schedule()
    assert {c.request.adapters for c in output.chunks} <= {output.adapters}
    sampled = {c.request.request_id: token for c in output.chunks if c.sample}
    scheduler.update(output, sampled)
    return output.adapters


def test_a_step_computes_requests_of_one_adapter_set() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=4, token_budget=64, max_context=64))
    requests = [make_request(1, 3, A), make_request(2, 3), make_request(3, 3, A)]
    for request in requests:
        scheduler.add_request(request)
    output = scheduler.schedule()
    assert output.adapters == A  # the oldest request's set
    assert [c.request for c in output.chunks] == [requests[0], requests[2]]
    # Sequences still go first come, first served: the base request holds one already.
    assert all(r.status == RequestStatus.RUNNING for r in requests)


def test_sets_take_turns_of_adapter_turn_steps_and_none_starves() -> None:
    config = SchedulerConfig(max_seqs=4, token_budget=64, max_context=256, adapter_turn=3)
    scheduler = Scheduler(config)
    for i, adapters in enumerate([A, (), B]):
        scheduler.add_request(make_request(i, 2, adapters))
    turns = [step(scheduler) for _ in range(12)]
    assert turns == [A] * 3 + [()] * 3 + [B] * 3 + [A] * 3
    assert scheduler.adapter_switches == 4


def test_a_set_alone_keeps_the_engine_without_switching() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=2, token_budget=64, adapter_turn=1))
    scheduler.add_request(make_request(1, 2, B))
    assert [step(scheduler) for _ in range(5)] == [B] * 5
    assert scheduler.adapter_switches == 1


def test_a_waiting_set_gets_its_turn_once_a_sequence_is_free() -> None:
    scheduler = Scheduler(SchedulerConfig(max_seqs=1, token_budget=64, adapter_turn=1))
    first, second = make_request(1, 2, A), make_request(2, 2, B)
    scheduler.add_request(first)
    scheduler.add_request(second)
    assert [step(scheduler) for _ in range(3)] == [A] * 3  # B cannot run: no sequence
    scheduler.finish(first, RequestStatus.FINISHED_STOPPED)
    assert step(scheduler) == B
    assert second.num_computed_tokens == 2


def test_prefix_cache_is_scoped_by_adapter_set() -> None:
    config = SchedulerConfig(max_seqs=1, token_budget=64, max_context=128, cache_seqs=2)
    scheduler = Scheduler(config)
    first = make_request(5, 40, A)
    scheduler.add_request(first)
    step(scheduler)
    scheduler.finish(first, RequestStatus.FINISHED_STOPPED)
    other_set = make_request(5, 40, B)
    scheduler.add_request(other_set)
    assert scheduler.schedule().copies == []  # B never reuses cells computed under A
    assert other_set.cached_tokens == 0
    scheduler.finish(other_set, RequestStatus.FINISHED_ABORTED)
    same_set = make_request(5, 40, A)
    scheduler.add_request(same_set)
    output = scheduler.schedule()
    assert [c.length for c in output.copies] == [39]
    assert same_set.cached_tokens == 39


def test_preemption_and_chunking_across_sets_finish_every_request() -> None:
    """Few cells, small budget, three sets: every request completes, every step is one set."""
    config = SchedulerConfig(
        max_seqs=3, token_budget=8, max_context=64, kv_cells=40, cache_seqs=1, adapter_turn=2
    )
    scheduler = Scheduler(config)
    sets: list[AdapterSet] = [A, (), B]
    requests = [make_request(i, 5 + 3 * (i % 4), sets[i % 3]) for i in range(12)]
    for request in requests:
        scheduler.add_request(request)
    seen: set[AdapterSet] = set()
    for _ in range(2000):
        if not scheduler.has_work:
            break
        seen.add(step(scheduler))
        for request in list(scheduler.running):
            if len(request.output_tokens) >= 12:
                scheduler.finish(request, RequestStatus.FINISHED_LENGTH)
    assert not scheduler.has_work
    assert all(len(r.output_tokens) == 12 for r in requests)
    assert seen == set(sets)
    assert scheduler.preemptions > 0  # the cell limit was reached


# -- real models: a base and two fine-tunes in a store -----------------------------------------


def settings_for(home: Path, **env: str) -> Settings:
    base = {
        "HEARTH_HOME": str(home),
        "HEARTH_THREADS": "2",
        "HEARTH_CONTEXT": "256",
        "HEARTH_MAX_SEQS": "4",
        "HEARTH_CACHE_SEQS": "2",
        "HEARTH_BATCH": "128",
    }
    return Settings.from_env(base | env)


CONFIG = EngineConfig(context=256, max_seqs=4, batch=128, threads=2, cache_seqs=2)


@pytest.fixture(scope="module")
def adapter_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    return {
        name: write_tiny_lora(folder / f"{name}.gguf", seed=seed)
        for name, seed in [("tuned-a", 1), ("tuned-b", 2), ("tuned-c", 3)]
    }


def create(store: Store, name: str, adapter: Path, tmp_path: Path) -> None:
    create_model(store, name, parse_modelfile(f"FROM tiny\nADAPTER {adapter}\n", tmp_path))


@pytest.fixture
def store(
    hearth_home: Path, tiny_model: Path, adapter_files: dict[str, Path], tmp_path: Path
) -> Store:
    store = Store(settings_for(hearth_home))
    store.import_gguf(tiny_model, "tiny")
    for name in ("tuned-a", "tuned-b"):
        create(store, name, adapter_files[name], tmp_path)
    return store


@pytest.fixture
def loader() -> CountingLoader:
    return CountingLoader()


@pytest.fixture
def manager(store: Store, hearth_home: Path, loader: CountingLoader) -> Iterator[ModelManager]:
    with ModelManager(store, settings_for(hearth_home), loader=loader) as manager:
        yield manager


@pytest.fixture(scope="module")
def dedicated(tiny_model: Path, adapter_files: dict[str, Path]) -> dict[str, dict[str, list[int]]]:
    """Each model's greedy answers from an LLM loaded with its adapter alone."""
    answers = {}
    for name in ("tiny", "tuned-a", "tuned-b", "tuned-c"):
        adapters = () if name == "tiny" else (adapter_files[name],)
        with LLM(tiny_model, CONFIG, ModelProfile(adapters=adapters)) as llm:
            answers[name] = {p: decided_tokens(llm.complete(p, GREEDY), MARGIN) for p in PROMPTS}
    return answers


def full(name: str) -> str:
    return f"{name}:latest"


def test_the_adapters_change_the_answers(dedicated: dict[str, dict[str, list[int]]]) -> None:
    first_prompt = {name: answers[PROMPTS[0]] for name, answers in dedicated.items()}
    assert len({tuple(tokens) for tokens in first_prompt.values()}) == 4


def test_one_base_load_serves_the_base_and_two_fine_tunes(
    manager: ModelManager,
    loader: CountingLoader,
    dedicated: dict[str, dict[str, list[int]]],
) -> None:
    for name in ("tiny", "tuned-a", "tuned-b"):
        with manager.acquire(name) as view:
            answer = decided_tokens(view.complete(PROMPTS[0], GREEDY), MARGIN)
            assert_prefix_equal(answer, dedicated[name][PROMPTS[0]])
    assert len(loader.loads) == 1
    statuses = manager.loaded()
    assert sorted(s.name for s in statuses) == [full("tiny"), full("tuned-a"), full("tuned-b")]
    assert {s.base for s in statuses} == {full("tiny")}
    assert len(manager.engine_stats()) == 1
    by_name = {s.name: s for s in statuses}
    adapters = sum(p.stat().st_size for s in statuses for p in s.adapters)
    base = by_name[full("tiny")]
    assert base.memory.weights == base.size_bytes + adapters  # adapters are charged
    tuned = by_name[full("tuned-a")]
    assert tuned.size_bytes == base.size_bytes + tuned.adapters[0].stat().st_size


def assert_prefix_equal(tokens: list[int], expected: list[int]) -> None:
    """Equal up to the shorter one's length: either may stop at its first close call."""
    n = min(len(tokens), len(expected))
    assert n >= 3, (tokens, expected)
    assert tokens[:n] == expected[:n]


def test_interleaved_concurrent_requests_get_their_own_adapters(
    manager: ModelManager, dedicated: dict[str, dict[str, list[int]]]
) -> None:
    names = ["tiny", "tuned-a", "tuned-b"]
    with (
        manager.acquire(names[0]) as plain,
        manager.acquire(names[1]) as tuned_a,
        manager.acquire(names[2]) as tuned_b,
    ):
        views = dict(zip(names, [plain, tuned_a, tuned_b], strict=True))
        submitted: list[tuple[str, str, Generation]] = []
        for prompt in PROMPTS:
            for name in names:
                submitted.append((name, prompt, views[name].complete(prompt, GREEDY)))
        for name, prompt, generation in submitted:
            assert_prefix_equal(decided_tokens(generation, MARGIN), dedicated[name][prompt])
        assert plain.stats().adapter_switches >= 3


def test_requests_from_threads_across_models(
    manager: ModelManager, dedicated: dict[str, dict[str, list[int]]]
) -> None:
    failures: list[BaseException] = []

    def ask(name: str, prompt: str) -> None:
        try:
            with manager.acquire(name) as view:
                tokens = decided_tokens(view.complete(prompt, GREEDY), MARGIN)
            assert_prefix_equal(tokens, dedicated[name][prompt])
        except BaseException as error:
            failures.append(error)

    threads = [
        threading.Thread(target=ask, args=(name, prompt))
        for prompt in PROMPTS
        for name in ("tiny", "tuned-a", "tuned-b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_prefix_cache_is_not_shared_between_adapter_sets(manager: ModelManager) -> None:
    prompt = "a prompt long enough to fill a few cache blocks of sixteen tokens each"
    params = SamplingParams(temperature=0, max_tokens=2)

    def cached(name: str) -> int:
        with manager.acquire(name) as view:
            return list(view.complete(prompt, params))[-1].cached_tokens

    assert cached("tuned-a") == 0
    assert cached("tuned-b") == 0  # same prompt, other adapter: nothing to reuse
    assert cached("tuned-a") > 0  # its own prefix is reused
    assert cached("tiny") == 0  # the base alone is another set too


def test_a_model_created_while_the_base_is_loaded_is_served_at_once(
    manager: ModelManager,
    store: Store,
    loader: CountingLoader,
    adapter_files: dict[str, Path],
    dedicated: dict[str, dict[str, list[int]]],
    tmp_path: Path,
) -> None:
    with manager.acquire("tuned-a") as tuned_a:
        create(store, "tuned-c", adapter_files["tuned-c"], tmp_path)
        with manager.acquire("tuned-c") as tuned_c:
            answer = decided_tokens(tuned_c.complete(PROMPTS[1], GREEDY), MARGIN)
            assert tuned_c.base is tuned_a.base
    assert_prefix_equal(answer, dedicated["tuned-c"][PROMPTS[1]])
    assert len(loader.loads) == 1


def test_unloading_a_fine_tune_frees_its_adapter_and_keeps_the_base(
    manager: ModelManager, adapter_files: dict[str, Path], loader: CountingLoader
) -> None:
    with manager.acquire("tiny") as plain:
        with manager.acquire("tuned-a"), manager.acquire("tuned-b"):
            pass
        base = plain.base
        assert len(base.loaded_adapters) == 2
        assert manager.unload("tuned-a")
        assert [p.name for p in base.loaded_adapters] == [adapter_of(manager, "tuned-b").name]
        assert full("tuned-a") not in [s.name for s in manager.loaded()]
        manager.store.remove("tuned-b")
        assert manager.unload("tuned-b")
        assert base.loaded_adapters == []
        assert tokens_of(plain.complete("still here", GREEDY))  # the base serves on
    assert len(loader.loads) == 1


def adapter_of(manager: ModelManager, name: str) -> Path:
    with manager.acquire(name) as view:
        return view.adapters[0]


def tokens_of(generation: Generation) -> list[int]:
    generation.text()
    return generation.request.output_tokens


def test_an_adapter_in_use_outlives_its_model_until_the_request_ends(
    manager: ModelManager,
) -> None:
    with manager.acquire("tiny") as plain, ExitStack() as lease:
        tuned = lease.enter_context(manager.acquire("tuned-a"))  # loads the adapter
        adapter = tuned.adapters[0]
        with DECODE_LOCK:  # the engine cannot finish the request while we look
            generation = tuned.complete("slow", GREEDY)
            lease.close()
            assert manager.unload("tuned-a")
            assert full("tuned-a") not in [s.name for s in manager.loaded()]
            assert adapter in plain.base.loaded_adapters  # the request still holds it
        assert len(tokens_of(generation)) == GREEDY.max_tokens
        assert adapter not in plain.base.loaded_adapters


def test_an_adapter_for_another_shape_fails_that_model_only(
    manager: ModelManager, store: Store, tmp_path: Path
) -> None:
    wrong = write_tiny_lora(tmp_path / "wrong.gguf", TinyModelSpec(n_embd=32, n_ff=64))
    create(store, "wrong", wrong, tmp_path)
    with manager.acquire("tuned-a") as tuned:
        with (
            pytest.raises(
                ModelLoadError, match=r"wrong:latest: llama\.cpp could not load the LoRA"
            ),
            manager.acquire("wrong"),
        ):
            pass
        assert tokens_of(tuned.complete("fine", GREEDY))
    assert [s.name for s in manager.loaded()] == [full("tuned-a")]


def test_a_view_releases_its_adapters_once(
    tiny_model: Path, adapter_files: dict[str, Path]
) -> None:
    path = adapter_files["tuned-a"]
    with LLM(tiny_model, CONFIG) as plain:
        first = ModelView(plain.base, ModelProfile(adapters=(path,)))
        second = ModelView(plain.base, ModelProfile(adapters=(path,)))
        first.release()
        first.release()  # a second release is a no-op, not a second user less
        assert plain.base.loaded_adapters == [path]
        second.release()
        assert plain.base.loaded_adapters == []
