"""The test-set format: good lines become cases, every bad line is reported with its number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import DatasetError
from hearth.evals.cases import load_cases
from hearth.evals.scorers import ContainsScorer, ExactScorer, JsonScorer, JudgeScorer


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_good_cases(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "tests.jsonl",
        [
            {"id": "fr", "prompt": "Capital of France?", "expected": "Paris"},
            "",
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Give JSON"},
                ],
                "scorers": ["json", {"type": "contains", "text": "{"}],
                "metadata": {"team": "support"},
            },
            {"id": 7, "prompt": "Q", "expected": "A", "scorers": ["contains", "judge"]},
        ],
    )
    first, second, third = load_cases(path)
    assert (first.id, first.line, first.prompt, first.expected) == (
        "fr",
        1,
        "Capital of France?",
        "Paris",
    )
    assert first.scorers == (ExactScorer("exact", "Paris"),)
    assert (second.id, second.line) == ("line-3", 3)
    assert second.messages == (("system", "Be brief."), ("user", "Give JSON"))
    assert second.question == "system: Be brief.\nuser: Give JSON"
    assert isinstance(second.scorers[0], JsonScorer)
    assert isinstance(second.scorers[1], ContainsScorer)
    assert second.metadata == {"team": "support"}
    assert not second.judged
    assert third.id == "7"
    assert isinstance(third.scorers[1], JudgeScorer)
    assert third.judged


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "tests.jsonl",
        [
            {"prompt": "fine", "expected": "x"},  # 1
            "{not json",  # 2
            ["a list"],  # 3
            {"prompt": "p"},  # 4: nothing to score
            {"prompt": "p", "messages": [{"role": "user", "content": "m"}], "expected": "x"},  # 5
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ],
                "expected": "x",
            },  # 6
            {"messages": [{"role": "robot", "content": "q"}], "expected": "x"},  # 7
            {
                "prompt": "p",
                "expected": "x",
                "scorers": [{"type": "regex", "pattern": "(a+)+"}],
            },  # 8
            {"prompt": "p", "expected": "x", "expect": "typo"},  # 9
            {"id": "dup", "prompt": "p", "expected": "x"},  # 10
            {"id": "dup", "prompt": "p", "expected": "x"},  # 11
            {"prompt": "  ", "expected": "x"},  # 12
            {"prompt": "p", "expected": 4},  # 13
            {"prompt": "p", "expected": "x", "scorers": []},  # 14
            {"prompt": "p", "scorers": ["exact"]},  # 15
        ],
    )
    with pytest.raises(DatasetError) as caught:
        load_cases(path)
    problems = caught.value.problems
    lines = [int(p.split(":")[0].removeprefix("line ")) for p in problems]
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    text = "\n".join(problems)
    for expected in (
        "line 2: not valid JSON",
        "line 3: expected a JSON object, got list",
        "line 4: no 'expected' and no 'scorers': nothing to score",
        "line 5: give exactly one of 'prompt' and 'messages'",
        "line 6: the last message must be the user's",
        "line 7: message 0: unknown role 'robot'",
        "line 8: scorer 0: pattern '(a+)+' refused: nested quantifiers",
        "line 9: unknown field(s) expect",
        "line 11: id 'dup' is used on line 10 already",
        "line 12: 'prompt' is empty",
        "line 13: 'expected' must be a string",
        "line 14: 'scorers' must be a non-empty list",
        "line 15: scorer 0: exact needs the case's 'expected' answer",
    ):
        assert expected in text
    assert str(caught.value).startswith(f"{path}: 13 bad example(s): line 2:")


def test_empty_or_missing_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DatasetError, match="no test cases"):
        load_cases(empty)
    with pytest.raises(DatasetError, match="no such file"):
        load_cases(tmp_path / "missing.jsonl")
