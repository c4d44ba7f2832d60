"""Speculative decoding on a real llama.cpp context with tiny random models: the output is the
same with and without it, KV cells never leak, finishes inside a verified run cut exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.engine.engine import Engine
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.request import Request, RequestOutput
from hearth.engine.runner import LlamaRunner, RunnerConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import SchedulerConfig
from hearth.engine.speculative import SpeculativeConfig
from hearth.errors import ValidationError

PROMPTS = [f"prompt {i} the quick brown fox" for i in range(4)]
OFF = SamplingParams(temperature=0, speculative="off")


@pytest.fixture(scope="module")
def llm(tiny_model: Path) -> Iterator[LLM]:
    """The tiny model with itself as its draft model: every draft should be accepted."""
    config = EngineConfig(context=256, max_seqs=4, batch=128, threads=2, draft_model=tiny_model)
    with LLM(tiny_model, config) as model:
        yield model


def run(llm: LLM, prompt: str, **params: object) -> tuple[list[int], str, str | None]:
    options: dict[str, object] = {"temperature": 0, "max_tokens": 60}
    options.update(params)
    generation = llm.complete(prompt, SamplingParams(**options))  # type: ignore[arg-type]
    outputs = list(generation)
    return (
        generation.request.output_tokens,
        "".join(o.text for o in outputs),
        outputs[-1].finish_reason,
    )


@pytest.mark.parametrize("method", ["ngram", "draft"])
def test_greedy_output_is_identical_with_and_without_speculation(llm: LLM, method: str) -> None:
    before = llm.stats()
    for prompt in PROMPTS:
        assert run(llm, prompt, speculative=method) == run(llm, prompt, speculative="off")
    after = llm.stats()
    assert after.verifications > before.verifications
    if method == "draft":  # its own draft: only the numerics of a bigger batch could disagree
        drafted = after.draft_tokens - before.draft_tokens
        assert after.accepted_tokens - before.accepted_tokens >= 0.9 * drafted
        assert after.steps - before.steps < 0.6 * 2 * 60 * len(PROMPTS)


def test_seeded_sampling_draws_the_same_tokens_with_and_without_speculation(llm: LLM) -> None:
    sampled = {"temperature": 0.9, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": 42}
    for prompt in PROMPTS[:2]:
        with_draft = run(llm, prompt, speculative="draft", **sampled)
        assert with_draft == run(llm, prompt, speculative="off", **sampled)


def test_logprobs_penalties_and_bias_are_honoured_inside_a_verified_run(llm: LLM) -> None:
    extra = {"logprobs": 3, "repeat_penalty": 1.3, "logit_bias": ((70, 3.0),)}
    plain = llm.complete(PROMPTS[0], SamplingParams(temperature=0, max_tokens=40, **extra))
    spec = llm.complete(
        PROMPTS[0], SamplingParams(temperature=0, max_tokens=40, speculative="draft", **extra)
    )
    chunks = list(spec)
    assert plain.text() == "".join(c.text for c in chunks)
    assert [e.token for e in plain.request.logprobs] == spec.request.output_tokens
    for a, b in zip(plain.request.logprobs, spec.request.logprobs, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-2)  # batch numerics
    assert sum(len(c.logprobs) for c in chunks) == len(spec.request.output_tokens)
    assert any(len(c.token_ids) > 1 for c in chunks)  # several tokens in one step


def test_finishes_inside_a_verified_run_cut_where_one_token_at_a_time_would(llm: LLM) -> None:
    tokens, _, _ = run(llm, PROMPTS[1], speculative="off")
    text = llm.tokenizer.detokenize(tokens)
    printable = [c for c in text[3:] if c.isascii() and c.isprintable() and c != " "]
    assert printable, "the tiny model's answer has an ASCII character to stop on"
    for params in ({"max_tokens": 7}, {"stop": (printable[0],)}, {"max_tokens": 200}):
        assert run(llm, PROMPTS[1], speculative="draft", **params) == run(
            llm, PROMPTS[1], speculative="off", **params
        )
    ends = [run(llm, p, max_tokens=200, speculative="draft")[2] for p in PROMPTS]
    assert "stop" in ends  # some answer ends with the end-of-sequence token inside a run


def test_no_draft_model_refuses_draft_requests(tiny_model: Path) -> None:
    config = EngineConfig(context=64, max_seqs=1, batch=32, threads=2)
    with LLM(tiny_model, config) as plain, pytest.raises(ValidationError, match="draft model"):
        plain.complete("hi", SamplingParams(speculative="draft"))


class OracleDrafter:
    """Proposes the true greedy continuation with one token spoiled at ``wrong``: exercises
    every rejection position on the real runner."""

    def __init__(self, answer: list[int], wrong: int) -> None:
        self.answer, self.wrong = answer, wrong

    def propose(self, wanted: list[tuple[Request, int]]) -> dict[int, list[int]]:
        drafts = {}
        for request, k in wanted:
            done = len(request.output_tokens)
            draft = list(self.answer[done : done + k])
            if self.wrong < len(draft):
                draft[self.wrong] = (draft[self.wrong] + 1) % 259
            drafts[request.request_id] = draft
        return drafts

    def release(self, request: Request) -> None:
        pass


def engine_for(model: Path, cache_seqs: int = 0) -> Engine:
    runner = LlamaRunner(model, RunnerConfig(256, 2 + cache_seqs, 128, 2))
    config = SchedulerConfig(max_seqs=2, token_budget=128, max_context=256, cache_seqs=cache_seqs)
    return Engine(runner, config, SpeculativeConfig(method="ngram", draft_max=6))


def drain(engine: Engine, request: Request) -> list[RequestOutput]:
    """Step until ``request`` finishes, checking after each step that its sequence holds
    exactly the cells the scheduler counts."""
    runner = engine.runner
    assert isinstance(runner, LlamaRunner)
    while not request.is_finished:
        engine.step()
        if request.seq_id is not None:
            assert runner.sequence_span(request.seq_id) == (0, request.num_computed_tokens - 1)
    return [request.outputs.get() for _ in range(request.outputs.qsize())]


@pytest.mark.parametrize("wrong", [0, 2, 5, 99])
def test_rejected_positions_leave_no_kv_cells_behind(tiny_model: Path, wrong: int) -> None:
    engine = engine_for(tiny_model)
    try:
        prompt = engine.runner.tokenizer.tokenize(PROMPTS[0])  # type: ignore[attr-defined]
        reference = Request(prompt_tokens=prompt, params=OFF.updated(max_tokens=50))
        engine.runner.prepare(reference)  # type: ignore[attr-defined]
        engine.add_request(reference)
        drain(engine, reference)
        engine.drafters["ngram"] = OracleDrafter(reference.output_tokens, wrong)
        params = SamplingParams(temperature=0, max_tokens=50)
        request = Request(prompt_tokens=prompt, params=params)
        engine.runner.prepare(request)  # type: ignore[attr-defined]
        engine.add_request(request)
        outputs = drain(engine, request)
        assert request.output_tokens == reference.output_tokens
        assert [t for o in outputs for t in o.token_ids] == reference.output_tokens
        assert engine.scheduler.used_cells == 0
        stats = engine.stats()
        assert stats.verifications > 0
        if wrong >= 6:
            assert stats.accepted_tokens == stats.draft_tokens
        else:
            assert stats.accepted_tokens < stats.draft_tokens
    finally:
        engine.runner.close()


def test_a_cut_run_leaves_the_cached_prefix_exactly_its_tokens(tiny_model: Path) -> None:
    engine = engine_for(tiny_model, cache_seqs=2)
    try:
        prompt = engine.runner.tokenizer.tokenize(PROMPTS[2] * 3)  # type: ignore[attr-defined]
        reference = Request(prompt_tokens=prompt, params=OFF.updated(max_tokens=30))
        engine.runner.prepare(reference)  # type: ignore[attr-defined]
        engine.add_request(reference)
        drain(engine, reference)
        engine.drafters["ngram"] = OracleDrafter(reference.output_tokens, 99)
        cut = Request(prompt_tokens=prompt, params=SamplingParams(temperature=0, max_tokens=9))
        engine.runner.prepare(cut)  # type: ignore[attr-defined]
        engine.add_request(cut)
        drain(engine, cut)
        assert cut.output_tokens == reference.output_tokens[:9]
        entry = max(engine.scheduler.cache._entries, key=lambda e: e.last_used)
        runner = engine.runner
        assert isinstance(runner, LlamaRunner)
        assert runner.sequence_span(entry.seq_id) == (0, len(entry.tokens) - 1)
        assert engine.scheduler.used_cells == engine.scheduler.cache.cells
    finally:
        engine.runner.close()


def test_no_drafting_when_more_requests_run_than_the_threshold(tiny_model: Path) -> None:
    config = EngineConfig(
        context=128,
        max_seqs=6,
        batch=128,
        threads=2,
        speculative=SpeculativeConfig(method="draft", max_running=4),
        draft_model=tiny_model,
    )
    with LLM(tiny_model, config) as busy:
        params = SamplingParams(temperature=0, max_tokens=20, speculative="draft")
        generations = [busy.complete(PROMPTS[i % 4] + "!" * i, params) for i in range(6)]
        for generation in generations:
            generation.text()
        assert busy.stats().verifications < 20  # only while fewer than 5 were running


def test_a_draft_model_with_other_weights_gives_the_same_output(
    tiny_model: Path, tmp_path: Path
) -> None:
    other = write_tiny_gguf(tmp_path / "draft.gguf", TinyModelSpec(n_layers=1, seed=7))
    config = EngineConfig(context=256, max_seqs=2, batch=128, threads=2, draft_model=other)
    with LLM(tiny_model, config) as model:
        for prompt in PROMPTS[:2]:
            assert run(model, prompt, speculative="draft") == run(model, prompt, speculative="off")
        assert model.stats().verifications > 0
