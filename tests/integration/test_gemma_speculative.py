"""Speculative decoding on the real Gemma 3 270M: same greedy text, fewer steps where the
answer repeats the prompt, little cost where it does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.speculative import SpeculativeConfig
from hearth.errors import ModelLoadError
from tests.greedy import decided_tokens, tokens_of

pytestmark = pytest.mark.gemma

CLOSE_CALL = 0.25  # as tests/integration/test_gemma_batching.py: batch numerics decide below it
PARAGRAPH = (
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades "
    "of salt wind. Every evening the keeper climbed the spiral stairs, trimmed the wick and "
    "wound the clockwork that turned the great lens. Ships passing in the night saw its beam "
    "sweep across the water and knew the rocks were near."
)
EDIT = f"Text: {PARAGRAPH}\n\nThe same text, with the word 'keeper' replaced by 'guardian':\nText: "
STORY = "Write a short story about a dragon who learns to bake bread.\n\nOnce upon a time,"
QUESTION = "The capital of France is"


@pytest.fixture(scope="module")
def gemma(gemma_model: Path) -> Iterator[LLM]:
    config = EngineConfig(
        context=1024, max_seqs=4, batch=512, threads=2, draft_model=gemma_model,
        speculative=SpeculativeConfig(method="ngram"),
    )  # fmt: skip
    with LLM(gemma_model, config) as llm:
        yield llm


def greedy(method: str, max_tokens: int = 48) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, logprobs=2, speculative=method)


def assert_same_greedy_text(gemma: LLM, prompts: tuple[str, ...], method: str) -> int:
    """Identical up to the first close call (tests/greedy.py: verifying 9 tokens at once is a
    different batch, and llama.cpp's kernels are not batch-invariant); returns how many
    tokens were compared."""
    compared = 0
    for prompt in prompts:
        plain = gemma.complete(prompt, greedy("off"))
        expected = decided_tokens(plain, CLOSE_CALL)
        spec = gemma.complete(prompt, greedy(method))
        assert tokens_of(spec)[: len(expected)] == expected
        compared += len(expected)
    return compared


def test_prompt_lookup_gives_the_same_greedy_text(gemma: LLM) -> None:
    """The editing prompt, where most drafts are accepted, and two where most fail."""
    assert assert_same_greedy_text(gemma, (EDIT, STORY, QUESTION), "ngram") >= 24


@pytest.mark.timeout(900)  # two Gemma decodes a step: slow on a busy machine
def test_gemma_as_its_own_draft_gives_the_same_greedy_text(gemma: LLM) -> None:
    before = gemma.stats()
    assert assert_same_greedy_text(gemma, (EDIT,), "draft") >= 16
    after = gemma.stats()
    drafted = after.draft_tokens - before.draft_tokens
    assert after.accepted_tokens - before.accepted_tokens > 0.8 * drafted > 0


def test_editing_accepts_most_drafts_and_takes_fewer_steps(gemma: LLM) -> None:
    before = gemma.stats()
    plain = gemma.complete(EDIT, greedy("off", 80))
    tokens_of(plain)
    middle = gemma.stats()
    spec = gemma.complete(EDIT, greedy("ngram", 80))
    tokens_of(spec)
    after = gemma.stats()
    assert after.accepted_tokens - middle.accepted_tokens > 0.6 * (
        after.draft_tokens - middle.draft_tokens
    )
    assert after.steps - middle.steps < 0.5 * (middle.steps - before.steps)


def test_free_text_backs_off(gemma: LLM) -> None:
    before = gemma.stats()
    tokens_of(gemma.complete(STORY, greedy("ngram", 120)))
    after = gemma.stats()
    assert after.verifications - before.verifications < 40  # of about 120 steps


def test_a_draft_model_with_another_vocabulary_is_refused(
    gemma_model: Path, tiny_model: Path
) -> None:
    config = EngineConfig(context=256, max_seqs=1, batch=64, threads=2, draft_model=tiny_model)
    with pytest.raises(ModelLoadError, match="same vocabulary"):
        LLM(gemma_model, config)
