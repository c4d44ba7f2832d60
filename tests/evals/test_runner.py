"""The runner in-process with the tiny random llama model (milliseconds a case): answers match
the engine's own greedy answers (a chat model's through its template, an adapter model's with its
adapter), a case that cannot be answered is recorded and fails, models are checked before any
work; the summary table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from hearth.config import Hardware, Settings
from hearth.devtools.tiny_gguf import write_tiny_lora
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.errors import EvalError, ModelNotFoundError
from hearth.evals import EvalOptions, EvalRun, check_judge, check_models, run_eval
from hearth.evals.cases import EvalCase, parse_case
from hearth.evals.report import summary_table
from hearth.modelfile.create import create_model
from hearth.modelfile.parse import parse_modelfile
from hearth.store import Store

MAX_TOKENS = 3


@pytest.fixture
def store(settings: Settings, tiny_model: Path, tiny_chat_model: Path) -> Store:
    store = Store(settings)
    store.import_gguf(tiny_model, "tiny")
    store.import_gguf(tiny_chat_model, "tiny-chat")
    adapter = write_tiny_lora(tiny_model.parent / "eval-adapter.gguf")
    recipe = parse_modelfile(f"FROM tiny\nADAPTER {adapter}\n", tiny_model.parent)
    create_model(store, "tiny-tuned", recipe)  # an adapter model on tiny's base
    return store


@pytest.fixture
def manager(store: Store, settings: Settings) -> Iterator[ModelManager]:
    with ModelManager(store, replace(settings, max_seqs=1, cache_seqs=0)) as manager:
        yield manager


def cases() -> list[EvalCase]:
    return [
        parse_case(1, {"id": "a", "prompt": "hello", "expected": "x", "scorers": ["contains"]}),
        parse_case(
            2, {"id": "b", "messages": [{"role": "user", "content": "hi"}], "scorers": ["json"]}
        ),
        parse_case(3, {"id": "long", "prompt": "z" * 5000, "expected": "x"}),
    ]


def test_answers_are_the_engines_greedy_answers(manager: ModelManager) -> None:
    progress: list[tuple[int, int]] = []
    results = run_eval(
        manager,
        ["tiny", "tiny-chat", "tiny-tuned"],
        cases(),
        EvalOptions(MAX_TOKENS),
        lambda done, total: progress.append((done, total)),
    )
    assert [r.name for r in results] == ["tiny", "tiny-chat", "tiny-tuned"]
    assert progress[-1] == (9, 9) and len(progress) == 9
    # The adapter model answers with its adapter: not what its base says.
    assert [c.answer for c in results[0].cases] != [c.answer for c in results[2].cases]
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS)
    for model in results:
        with manager.acquire(model.name) as view:
            first, second, _ = model.cases
            # A prompt goes through the model's chat template when it has one.
            tokens = view.prompt_tokens("hello")
            assert (tokens == view.tokenizer.tokenize("hello")) == (model.name != "tiny-chat")
            assert first.answer == view.generate(tokens, params)[0].text()
            assert second.answer == view.chat([ChatMessage("user", "hi")], params).text()
            assert first.prompt_tokens == len(view.prompt_tokens("hello"))
        assert 1 <= first.completion_tokens <= MAX_TOKENS
        assert first.error is None and second.error is None
        assert model.tokens_per_second is not None and model.tokens_per_second > 0
        assert model.load_seconds >= 0


def test_a_case_that_cannot_be_answered_fails_and_says_why(manager: ModelManager) -> None:
    (model,) = run_eval(manager, ["tiny"], cases(), EvalOptions(MAX_TOKENS))
    long = model.cases[2]
    assert long.error is not None and "context" in long.error
    assert long.answer == "" and long.completion_tokens == 0
    assert [s.passed for s in long.scores] == [False]
    assert long.scores[0].detail.startswith("no answer: ")
    assert not long.passed
    assert model.pass_rates()["all"].total == 3
    assert model.generation_seconds == sum(r.seconds for r in model.cases[:2])


def test_models_are_checked_before_any_work(store: Store, tiny_bert_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="'tiny2'"):
        check_models(store, ["tiny", "tiny2"])
    store.import_hf_dir(tiny_bert_dir, "minilm")
    with pytest.raises(EvalError, match="minilm is a bert model, an encoder for embeddings"):
        check_models(store, ["tiny", "minilm"])
    with pytest.raises(EvalError, match="minilm is a bert model"):
        check_models(store, ["tiny"], judge="minilm")
    with pytest.raises(EvalError, match="tiny:latest is named twice"):
        check_models(store, ["tiny", "tiny:latest"])
    check_models(store, ["tiny", "tiny-chat"], judge="tiny")


def test_a_judge_scorer_needs_a_judge() -> None:
    judged = parse_case(4, {"prompt": "p", "scorers": ["judge"]})
    with pytest.raises(EvalError, match="line 4 uses the judge scorer: name a judge model"):
        check_judge([*cases(), judged], None)
    check_judge([judged], "tiny")
    check_judge(cases(), None)


def test_summary_table_shows_rates_speed_and_cost(manager: ModelManager) -> None:
    results = run_eval(manager, ["tiny"], cases()[:2], EvalOptions(MAX_TOKENS))
    console = Console(width=200, record=True)
    console.print(summary_table(EvalRun(Path("t.jsonl"), MAX_TOKENS, None, None, results)))
    text = console.export_text()
    header, row = text.splitlines()[1:3]
    assert header.split() == ["MODEL", "CONTAINS", "JSON", "ALL", "TOKENS/S", "COST/1M"]
    assert row.split()[0] == "tiny" and row.split()[-1] == "—"
    hardware = Hardware(3.6, "EUR", "3.6 EUR per hour")
    console.print(summary_table(EvalRun(Path("t.jsonl"), MAX_TOKENS, None, hardware, results)))
    text = console.export_text()
    assert "COST/1M EUR" in text
    tokens_per_second = results[0].tokens_per_second
    assert tokens_per_second is not None
    assert results[0].cost_per_million(hardware) == pytest.approx(1e3 / tokens_per_second)
