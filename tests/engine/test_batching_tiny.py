"""Issue 3 engine features on a real llama.cpp context with a tiny random model."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.engine import Generation
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.runner import DECODE_LOCK
from hearth.engine.sampling import SamplingParams
from hearth.errors import ContextOverflowError, EngineOverloadedError, ValidationError
from tests import greedy
from tests.greedy import tokens_of

GREEDY = SamplingParams(temperature=0, max_tokens=16, logprobs=2)
NEAR_TIE = 0.02  # logprob gap under which batch composition may decide a greedy choice


def decided_tokens(generation: Generation) -> list[int]:
    return greedy.decided_tokens(generation, NEAR_TIE)


def make_llm(path: Path, **overrides: object) -> LLM:
    options: dict[str, object] = {"context": 256, "max_seqs": 16, "batch": 256, "threads": 2}
    options.update(overrides)
    return LLM(path, EngineConfig(**options))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def llm(tiny_model: Path) -> Iterator[LLM]:
    with make_llm(tiny_model, cache_seqs=4) as model:
        yield model


def test_greedy_alone_equals_greedy_in_a_batch_of_16(llm: LLM) -> None:
    prompts = [f"prompt number {i} " * (1 + i % 3) for i in range(16)]
    alone = [
        decided_tokens(llm.complete(p, GREEDY, cache_key=f"alone-{i}"))
        for i, p in enumerate(prompts)
    ]
    together = [llm.complete(p, GREEDY, cache_key=f"batch-{i}") for i, p in enumerate(prompts)]
    for expected, generation in zip(alone, together, strict=True):
        assert tokens_of(generation)[: len(expected)] == expected
    assert sum(map(len, alone)) > 8 * 16  # the ties are rare: most tokens are compared


def test_preempted_requests_are_recomputed_exactly(tiny_model: Path) -> None:
    prompts = [f"preempt {i} " * 4 for i in range(4)]
    params = SamplingParams(temperature=0, max_tokens=40, logprobs=2)
    with make_llm(tiny_model, max_seqs=4) as roomy:
        expected = [decided_tokens(g) for g in [roomy.complete(p, params) for p in prompts]]
    with make_llm(tiny_model, max_seqs=4, kv_cells=160) as tight:
        results = [tight.complete(p, params) for p in prompts]
        for want, generation in zip(expected, results, strict=True):
            assert tokens_of(generation)[: len(want)] == want
        assert tight.stats().preemptions > 0
    assert sum(map(len, expected)) > 60


def test_cached_prefix_is_reused_and_gives_the_same_answer(llm: LLM) -> None:
    prompt = "shared system prompt " * 5
    first = llm.complete(prompt + "question one", GREEDY, cache_key="t1")
    tokens_of(first)
    assert first.request.cached_tokens == 0
    second = llm.complete(prompt + "question one", GREEDY, cache_key="t1")
    reference = decided_tokens(first)
    assert tokens_of(second)[: len(reference)] == reference
    assert second.request.cached_tokens > 0
    outputs = list(llm.complete(prompt + "question two", GREEDY, cache_key="t1"))
    assert outputs[-1].cached_tokens >= len(prompt) - 16
    stranger = llm.complete(prompt + "question one", GREEDY, cache_key="t2")
    assert tokens_of(stranger)[: len(reference)] == reference
    assert stranger.request.cached_tokens == 0  # another tenant never reuses it


def test_n_completions_share_the_prompt_and_differ_when_sampled(llm: LLM) -> None:
    greedy = llm.complete_many("the same prompt for all", GREEDY, n=3, cache_key="n")
    reference = decided_tokens(greedy[0])
    assert all(tokens_of(g)[: len(reference)] == reference for g in greedy[1:])
    sampled = llm.complete_many(
        "the same prompt for all",
        SamplingParams(temperature=1.5, top_k=0, seed=3, max_tokens=16),
        3,
    )
    assert len({tuple(tokens_of(g)) for g in sampled}) == 3
    assert all(g.request.cached_tokens >= 1 for g in greedy[1:])


def test_logprobs_describe_the_sampled_token(llm: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=6, logprobs=3)
    outputs = list(llm.complete("logprob test", params))
    entries = [lp for o in outputs for lp in o.logprobs]
    assert len(entries) == 6
    for entry in entries:
        assert entry.logprob <= 0.0
        assert len(entry.top) == 3
        assert [p for _, p in entry.top] == sorted((p for _, p in entry.top), reverse=True)
        assert entry.top[0][0] == entry.token  # greedy takes the most likely token
        assert entry.top[0][1] == pytest.approx(entry.logprob)


def test_logit_bias_forces_a_token(llm: LLM) -> None:
    x = llm.tokenizer.tokenize("x", add_special=False)[-1]
    params = SamplingParams(temperature=0, max_tokens=5, logit_bias=((x, 100.0),))
    generation = llm.complete("anything", params)
    assert tokens_of(generation) == [x] * 5


def test_grammar_constrains_the_output(llm: LLM) -> None:
    params = SamplingParams(temperature=1.0, seed=1, max_tokens=20, grammar='root ::= "yes" | "no"')
    outputs = list(llm.complete("Answer:", params))
    assert "".join(o.text for o in outputs) in ("yes", "no")
    assert outputs[-1].finish_reason == "stop"


def test_grammar_that_never_ends_is_stopped_by_max_tokens(llm: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=12, grammar='root ::= "ab" root')
    outputs = list(llm.complete("go", params))
    assert "".join(o.text for o in outputs) == "ab" * 6
    assert outputs[-1].finish_reason == "length"


def test_invalid_grammar_fails_that_request_only(llm: LLM) -> None:
    with pytest.raises(ValidationError, match="grammar"):
        llm.complete("x", SamplingParams(grammar="root ::= (unclosed"))
    assert tokens_of(llm.complete("still serving", GREEDY))


def test_max_tokens_beyond_the_context_is_refused_with_the_numbers(llm: LLM) -> None:
    with pytest.raises(ContextOverflowError, match=r"max_tokens \(1000\).*context of 256"):
        llm.complete("short", SamplingParams(max_tokens=1000))


def test_queue_full_is_a_clear_error(tiny_model: Path) -> None:
    with make_llm(tiny_model, max_seqs=1, max_queue=2) as small:
        with DECODE_LOCK:  # hold the engine inside a decode so requests pile up
            accepted = [small.complete("q", GREEDY) for _ in range(3)]
            with pytest.raises(EngineOverloadedError, match="queue full"):
                small.complete("q", GREEDY)
        assert all(tokens_of(g) for g in accepted)
        assert tokens_of(small.complete("after", GREEDY))  # room again


def test_a_thousand_queued_requests_are_all_answered(tiny_model: Path) -> None:
    with make_llm(tiny_model, max_seqs=16, max_queue=1000) as busy:
        generations = [
            busy.complete(f"r{i}", SamplingParams(temperature=0, max_tokens=2)) for i in range(1000)
        ]
        assert all(len(tokens_of(g)) == 2 for g in generations)
        assert busy.stats().finished == 1000


def test_random_aborts_leak_no_kv_cells(tiny_model: Path) -> None:
    rng = random.Random(0)
    with make_llm(tiny_model, max_seqs=8, max_queue=1000, cache_seqs=2) as model:
        live: list[Generation] = []
        for i in range(1000):
            params = SamplingParams(temperature=0, max_tokens=rng.randint(1, 30))
            live.append(model.complete(f"abort {i % 37} " * rng.randint(1, 5), params))
            if rng.random() < 0.7:
                rng.choice(live).abort()
        for generation in live:
            generation.text()
        stats = model.stats()
        assert (stats.running, stats.waiting) == (0, 0)
        engine = model.base.thread.engine
        cached = {e.seq_id for e in engine.scheduler.cache._entries}
        runner = engine.runner
        for seq_id in range(8 + 2):
            span = runner.sequence_span(seq_id)  # type: ignore[attr-defined]
            assert (span == (-1, -1)) == (seq_id not in cached), (seq_id, span)
        assert stats.kv_cells_used == engine.scheduler.cache.cells


def test_deadline_aborts_the_request_and_frees_its_sequence(tiny_model: Path) -> None:
    with make_llm(tiny_model, max_seqs=1) as model:
        with DECODE_LOCK:  # the engine is stuck in a decode until the deadline has passed
            late = model.complete("slow", SamplingParams(temperature=0), timeout=0.05)
            time.sleep(0.2)
        outputs = list(late)
        assert outputs[-1].finish_reason == "abort"
        assert tokens_of(model.complete("next", GREEDY))  # its sequence was freed
        with pytest.raises(ValidationError, match="timeout"):
            model.complete("x", GREEDY, timeout=0)
