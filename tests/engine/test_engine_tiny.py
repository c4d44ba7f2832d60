"""The engine on a real llama.cpp context with a tiny random model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.engine import Engine, EngineThread
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.request import Request, RequestStatus
from hearth.engine.runner import LlamaRunner
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import SchedulerConfig, SchedulerOutput
from hearth.engine.templates import ChatMessage
from hearth.errors import ContextOverflowError, ValidationError

GREEDY = SamplingParams(temperature=0, max_tokens=24)


@pytest.fixture(scope="module")
def llm(tiny_model: Path) -> Iterator[LLM]:
    with LLM(tiny_model, EngineConfig(context=256, max_seqs=4, batch=128, threads=2)) as model:
        yield model


def test_greedy_output_is_deterministic(llm: LLM) -> None:
    first = list(llm.complete("hello world", GREEDY))
    second = list(llm.complete("hello world", GREEDY))
    assert [o.token_ids for o in first] == [o.token_ids for o in second]
    assert first[-1].finish_reason == "length"
    assert first[-1].completion_tokens == 24


def test_greedy_alone_equals_greedy_in_a_batch(llm: LLM) -> None:
    alone = llm.complete("batch me", GREEDY)
    expected = [t for o in alone for t in o.token_ids]
    together = [llm.complete("batch me", GREEDY) for _ in range(4)]
    others = [llm.complete(f"other prompt {i}", GREEDY) for i in range(3)]
    results = [[t for o in g for t in o.token_ids] for g in together]
    for g in others:
        g.text()
    assert results == [expected] * 4


def test_max_tokens_is_exact(llm: LLM) -> None:
    generation = llm.complete("count", SamplingParams(temperature=0, max_tokens=5))
    outputs = list(generation)
    assert outputs[-1].completion_tokens == 5
    assert len(generation.request.output_tokens) == 5


def test_seeded_sampling_is_reproducible_and_seeds_differ(llm: LLM) -> None:
    def sample(seed: int) -> list[int]:
        generation = llm.complete(
            "x", SamplingParams(temperature=1.5, top_k=0, seed=seed, max_tokens=16)
        )
        generation.text()
        return generation.request.output_tokens

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_stop_string_ends_the_answer_without_the_stop_text(llm: LLM) -> None:
    full = llm.complete("stop test", SamplingParams(temperature=0, max_tokens=40)).text()
    # A random model writes mostly invalid UTF-8; stop at its first plain ASCII character.
    stop = next(c for c in full[3:] if c.isascii() and c.isprintable())
    outputs = list(
        llm.complete("stop test", SamplingParams(temperature=0, max_tokens=40, stop=(stop,)))
    )
    text = "".join(o.text for o in outputs)
    assert text == full[: full.index(stop)]
    assert outputs[-1].finish_reason == "stop"


def test_prompt_that_fills_the_context_is_refused(llm: LLM) -> None:
    with pytest.raises(ContextOverflowError, match="context holds 256"):
        llm.complete("a" * 400, GREEDY)


def test_generation_stops_at_the_context_limit(llm: LLM) -> None:
    outputs = list(llm.complete("a" * 240, SamplingParams(temperature=0)))
    assert outputs[-1].finish_reason == "length"
    assert outputs[-1].prompt_tokens + outputs[-1].completion_tokens == 256


def test_abort_frees_the_sequence(tiny_model: Path) -> None:
    runner = LlamaRunner(tiny_model, _runner_config())
    thread = EngineThread(
        Engine(runner, SchedulerConfig(max_seqs=1, token_budget=64, max_context=256))
    )
    try:
        generation = thread.submit(
            runner.tokenizer.tokenize("abort me"), SamplingParams(temperature=0)
        )
        outputs = iter(generation)
        next(outputs)
        generation.abort()
        last = list(outputs)[-1]
        assert last.finish_reason == "abort"
        assert generation.request.status == RequestStatus.FINISHED_ABORTED
        # The only sequence is free again: a second request runs and finishes.
        follow_up = thread.submit(runner.tokenizer.tokenize("next"), GREEDY)
        assert list(follow_up)[-1].finish_reason == "length"
        assert runner.sequence_span(0) == (-1, -1)  # no KV cells left behind
    finally:
        thread.close()


def test_empty_prompt_is_a_validation_error(llm: LLM) -> None:
    with pytest.raises(ValidationError, match="prompt"):
        llm.base.thread.submit([], GREEDY)


def test_runner_failure_reaches_every_caller(tiny_model: Path) -> None:
    class FailingRunner:
        def __init__(self, inner: LlamaRunner) -> None:
            self.inner = inner
            self.tokenizer = inner.tokenizer

        def execute(self, output: SchedulerOutput) -> dict[int, int]:
            raise RuntimeError("decode exploded")

        def prepare(self, request: Request) -> None:
            self.inner.prepare(request)

        def free_sequences(self, seq_ids: list[int]) -> None:
            self.inner.free_sequences(seq_ids)

        def release(self, request: Request) -> None:
            self.inner.release(request)

        def close(self) -> None:
            self.inner.close()

    runner = FailingRunner(LlamaRunner(tiny_model, _runner_config()))
    thread = EngineThread(
        Engine(runner, SchedulerConfig(max_seqs=2, token_budget=64, max_context=256))
    )
    try:
        generation = thread.submit([1, 2, 3], GREEDY)
        with pytest.raises(RuntimeError, match="decode exploded"):
            generation.text()
    finally:
        thread.close()


def test_chat_template_is_rendered_and_bos_not_doubled(tiny_chat_model: Path) -> None:
    with LLM(tiny_chat_model, EngineConfig(context=256, max_seqs=1, batch=64, threads=2)) as chat:
        assert chat.chat_template is not None
        tokens = chat.chat_tokens([ChatMessage("user", "hi")])
        assert tokens[0] == chat.tokenizer.bos
        assert tokens[1] != chat.tokenizer.bos
        assert chat.tokenizer.detokenize(tokens[1:]).endswith("<|user|>hi\n<|assistant|>")
        assert list(chat.chat([ChatMessage("user", "hi")], GREEDY))[-1].finished


def _runner_config():  # type: ignore[no-untyped-def]
    from hearth.engine.runner import RunnerConfig

    return RunnerConfig(n_ctx_per_seq=256, n_seq_max=2, n_batch=64, n_threads=2)


def test_model_llama_cpp_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    import gguf

    from hearth.errors import ModelLoadError

    path = tmp_path / "no-tensors.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelLoadError, match="could not load"):
        LLM(path, EngineConfig(context=64, max_seqs=1, batch=32, threads=1))


def test_a_finished_generation_iterates_as_empty(llm: LLM) -> None:
    generation = llm.complete("twice", GREEDY)
    assert list(generation)[-1].finished
    assert list(generation) == []  # does not wait for outputs that will never come
