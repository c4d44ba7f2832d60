"""The engine on the real Gemma 3 270M model (Q4_K_M, from the `models` extra)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from tests.greedy import decided_tokens, tokens_of

pytestmark = pytest.mark.gemma

PROMPT = "The three primary colours are"


@pytest.fixture(scope="module")
def gemma(gemma_model: Path) -> Iterator[LLM]:
    with LLM(gemma_model, EngineConfig(context=1024, max_seqs=4, batch=256, threads=2)) as llm:
        yield llm


def test_base_model_has_no_chat_template(gemma: LLM) -> None:
    assert gemma.chat_template is None


def test_greedy_output_is_identical_across_runs_and_readable(gemma: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=32)
    first = gemma.complete(PROMPT, params).text()
    second = gemma.complete(PROMPT, params).text()
    assert first == second
    assert len(first.split()) >= 5
    assert any(colour in first.lower() for colour in ("red", "blue", "yellow", "green"))


def test_greedy_alone_equals_greedy_in_a_batch(gemma: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=24, logprobs=2)
    single = gemma.complete(PROMPT, params)
    alone = decided_tokens(single, margin=0.25)  # see tests/greedy.py
    batch = [
        gemma.complete(PROMPT if i % 2 == 0 else f"Question {i}: why?", params) for i in range(4)
    ]
    for generation in (batch[0], batch[2]):
        assert tokens_of(generation)[: len(alone)] == alone
        first, reference = generation.request.logprobs[0], single.request.logprobs[0]
        assert first.token == reference.token
        assert first.logprob == pytest.approx(reference.logprob, abs=0.15)
    assert alone


def test_stop_string_cuts_the_answer(gemma: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=48)
    full = gemma.complete(PROMPT, params).text()
    words = full.split()
    stop = words[3]
    outputs = list(gemma.complete(PROMPT, params.updated(stop=(stop,))))
    assert "".join(o.text for o in outputs) == full[: full.index(stop)]
    assert outputs[-1].finish_reason == "stop"


def test_max_tokens_limits_the_answer(gemma: LLM) -> None:
    outputs = list(gemma.complete(PROMPT, SamplingParams(temperature=0, max_tokens=7)))
    assert outputs[-1].completion_tokens == 7
    assert outputs[-1].finish_reason == "length"


@pytest.mark.parametrize(
    ("prompt", "lowest_codepoint"),
    [("東京は日本の", 0x3000), ("Emoji list: 🍎 apple, 🍌 banana, 🍇", 0x1F300)],
)
def test_multibyte_prompt_and_answer_are_valid_text(
    gemma: LLM, prompt: str, lowest_codepoint: int
) -> None:
    generation = gemma.complete(prompt, SamplingParams(temperature=0, max_tokens=24))
    streamed = "".join(o.text for o in generation)
    assert "\ufffd" not in streamed
    assert any(ord(ch) >= lowest_codepoint for ch in streamed), streamed
    # Streaming in pieces gives exactly the text of all the tokens decoded at once.
    assert streamed == gemma.tokenizer.detokenize(generation.request.output_tokens)


def test_seed_makes_sampling_reproducible(gemma: LLM) -> None:
    def sample(seed: int) -> str:
        params = SamplingParams(
            temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed, max_tokens=24
        )
        return gemma.complete("Once upon a time", params).text()

    assert sample(1234) == sample(1234)
    assert len({sample(1234), sample(99), sample(5)}) > 1
