"""Continuous batching, prefix cache and structured output on the real Gemma 3 270M."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.grammar import json_object_grammar, json_schema_grammar
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from tests.greedy import decided_tokens, tokens_of

pytestmark = pytest.mark.gemma

GREEDY = SamplingParams(temperature=0, max_tokens=24, logprobs=2)
CLOSE_CALL = 0.25  # logprob gap under which batch composition may flip Gemma's greedy choice
PROMPTS = [
    "The capital of France is",
    "Water boils at a temperature of",
    "The largest planet in the solar system is",
    "A haiku about autumn leaves:",
]


@pytest.fixture(scope="module")
def gemma(gemma_model: Path) -> Iterator[LLM]:
    config = EngineConfig(context=1024, max_seqs=16, batch=512, threads=2, cache_seqs=2)
    with LLM(gemma_model, config) as llm:
        yield llm


def test_greedy_alone_equals_greedy_in_a_batch_of_16(gemma: LLM) -> None:
    """llama.cpp is not batch-invariant (tests/greedy.py): tokens are compared exactly up to
    the first close call, and the first token's log-probability within 0.15."""
    prompts = [PROMPTS[i % 4] + " " * (i // 4) for i in range(16)]
    alone = [gemma.complete(p, GREEDY, cache_key=f"a{i}") for i, p in enumerate(prompts)]
    decided = [decided_tokens(g, CLOSE_CALL) for g in alone]
    batch = [gemma.complete(p, GREEDY, cache_key=f"b{i}") for i, p in enumerate(prompts)]
    for single, expected, generation in zip(alone, decided, batch, strict=True):
        assert tokens_of(generation)[: len(expected)] == expected
        first, reference = generation.request.logprobs[0], single.request.logprobs[0]
        assert first.token == reference.token
        assert first.logprob == pytest.approx(reference.logprob, abs=0.15)
    assert sum(map(len, decided)) >= 2 * 16


def test_cached_prefix_gives_the_same_answer(gemma: LLM) -> None:
    system = "You are a careful assistant. Answer in one short sentence. " * 6
    first = gemma.complete(system + PROMPTS[0], GREEDY, cache_key="c")
    expected = first.text()
    again = gemma.complete(system + PROMPTS[0], GREEDY, cache_key="c")
    assert again.text() == expected
    assert again.request.cached_tokens >= len(first.request.prompt_tokens) - 1


def test_json_schema_output_parses_and_follows_the_schema(gemma: LLM) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    params = SamplingParams(temperature=0, max_tokens=64, grammar=json_schema_grammar(schema))
    outputs = list(gemma.complete("Describe Paris as JSON:", params))
    document = json.loads("".join(o.text for o in outputs))
    assert set(document) == {"city", "population"}
    assert isinstance(document["population"], int)
    assert outputs[-1].finish_reason == "stop"


def test_json_mode_gives_an_object(gemma: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=128, grammar=json_object_grammar())
    prompt = 'A cat as JSON: {"name": "Tom", "age": 3}\nA dog as JSON:'
    outputs = list(gemma.complete(prompt, params))
    assert outputs[-1].finish_reason == "stop"
    assert isinstance(json.loads("".join(o.text for o in outputs)), dict)
