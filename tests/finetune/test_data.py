"""Training data: every bad line reported with its number; masks, EOS, templates, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearth.errors import DatasetError
from hearth.finetune import data as ds
from tests.finetune.conftest import write_jsonl


def _problems(path: Path) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        ds.load_examples(path)
    return caught.value.problems


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        '{"prompt": "ok", "completion": "fine"}',
        "{not json",
        '{"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]}',
        '{"messages": [{"role": "wizard", "content": "x"}]}',
        '{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}',
        '{"messages": [{"role": "user", "content": "only a question"}]}',
        '{"prompt": "no completion"}',
        '{"text": ""}',
        '["a", "list"]',
        '{"unknown": 1}',
        "",
        '{"text": "good"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    problems = _problems(path)
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(2, 11)]
    text = "\n".join(problems)
    for fragment in (
        "not valid JSON",
        "missing 'role'",
        "unknown role 'wizard'",
        "empty content",
        "no assistant message",
        "'completion' is missing",
        "'text' is empty",
        "expected a JSON object",
        "unknown format",
    ):
        assert fragment in text


def test_an_empty_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert _problems(path) == ["no examples (the dataset is empty)"]
    assert "no such file" in _problems(tmp_path / "missing.jsonl")[0]


def test_a_saved_dataset_folder_is_read(tmp_path: Path) -> None:
    import datasets  # type: ignore[import-untyped]

    rows = {"prompt": ["a: ", "b: "], "completion": ["one", ""]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    assert _problems(tmp_path / "ds") == ["line 2: 'completion' is missing or empty"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    from hearth.devtools.tiny_gguf import write_tiny_gguf

    folder = tmp_path_factory.mktemp("tok")
    write_tiny_gguf(folder / "model.gguf")
    return AutoTokenizer.from_pretrained(str(folder), gguf_file="model.gguf")


def test_loss_only_on_the_completion_and_eos_appended(tokenizer: Any) -> None:
    example = ds.parse_example(1, {"prompt": "Q: ", "completion": "hi"})
    tokenized = ds.tokenize_example(example, tokenizer)
    assert tokenized.input_ids[-1] == tokenizer.eos_token_id
    trained = [
        t
        for t, label in zip(tokenized.input_ids, tokenized.labels, strict=True)
        if label != ds.IGNORE
    ]
    assert tokenizer.decode(trained[:-1]) == "hi"
    assert trained[-1] == tokenizer.eos_token_id


def test_chat_masks_everything_but_assistant_turns(tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Later"},
    ]
    example = ds.parse_example(3, {"messages": messages})
    tokenized = ds.tokenize_example(example, tokenizer)
    trained = [
        t
        for t, label in zip(tokenized.input_ids, tokenized.labels, strict=True)
        if label != ds.IGNORE
    ]
    text = tokenizer.decode(trained)
    assert "Hello" in text and "Later" in text
    assert "Hi" not in text and "Bye" not in text and "brief" not in text
    assert trained.count(tokenizer.eos_token_id) == 2  # each assistant turn learns to stop


def test_over_long_examples_are_counted_not_dropped(tokenizer: Any) -> None:
    examples = [
        ds.parse_example(1, {"text": "short"}),
        ds.parse_example(2, {"text": "x" * 100}),
        ds.parse_example(5, {"text": "y" * 100}),
    ]
    with pytest.raises(DatasetError) as caught:
        ds.tokenize_examples(examples, tokenizer, 32, "data.jsonl")
    assert [p.split(":")[0] for p in caught.value.problems] == ["line 2", "line 5"]
    assert "over --max-seq-len 32" in str(caught.value)
    stats = ds.token_stats(ds.tokenize_examples(examples[:1], tokenizer, 32, "d"))
    assert stats.examples == 1 and stats.total_tokens == stats.max_tokens > 5


def test_held_out_split_is_seeded_and_keeps_one_of_each(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}"} for i in range(10)])
    examples = ds.load_examples(path)
    train, held = ds.split_held_out(examples, 0.2, seed=1)
    assert len(held) == 2 and len(train) == 8
    assert ds.split_held_out(examples, 0.2, seed=1) == (train, held)
    assert ds.split_held_out(examples[:2], 0.01, seed=0)[1] != []
