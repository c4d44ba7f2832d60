"""The test set: one JSON object a line (docs/EVAL.md)::

    {"id": "capital", "prompt": "The capital of France is", "expected": "Paris",
     "scorers": ["contains"]}
    {"messages": [{"role": "user", "content": "Reply in JSON"}], "scorers": ["json"]}

Each case has a ``prompt`` or ``messages`` (ending with the user's turn), an optional
``expected`` answer, optional ``scorers`` (default ``["exact"]``, which needs ``expected``), an
optional ``id`` (default ``line-N``) and optional ``metadata`` (any JSON, copied to the
results). Every bad line is reported with its number, as for training data: nothing is dropped
silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import DatasetError
from hearth.evals.scorers import JudgeScorer, Scorer, parse_scorer
from hearth.finetune.data import BadRow, jsonl_rows, parse_messages

FIELDS = frozenset({"id", "prompt", "messages", "expected", "scorers", "metadata"})
DEFAULT_SCORERS = ("exact",)


@dataclass(frozen=True)
class EvalCase:
    """One validated case; ``line`` is its 1-based line in the file."""

    line: int
    id: str
    scorers: tuple[Scorer, ...]
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] = ()
    expected: str | None = None
    metadata: Any = None

    @property
    def question(self) -> str:
        """The prompt as text (a conversation as ``role: content`` lines), for reports and
        the judge."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(f"{role}: {content}" for role, content in self.messages)

    @property
    def judged(self) -> bool:
        return any(isinstance(scorer, JudgeScorer) for scorer in self.scorers)


def load_cases(path: Path) -> list[EvalCase]:
    """Validated cases from a JSONL file; DatasetError lists every bad line."""
    if not path.is_file():
        raise DatasetError(str(path), ["no such file"])
    cases: list[EvalCase] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in jsonl_rows(path):
        try:
            if isinstance(row, BadRow):
                raise ValueError(row.reason)
            case = parse_case(line, row)
            if case.id in seen:
                raise ValueError(f"id {case.id!r} is used on line {seen[case.id]} already")
        except ValueError as error:
            problems.append(f"line {line}: {error}")
            continue
        seen[case.id] = line
        cases.append(case)
    if problems:
        raise DatasetError(str(path), problems)
    if not cases:
        raise DatasetError(str(path), ["no test cases (the file is empty)"])
    return cases


def parse_case(line: int, row: object) -> EvalCase:
    """One case, or ValueError saying what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})"
        )
    prompt, messages = _prompt(row)
    expected = row.get("expected")
    if expected is not None and not isinstance(expected, str):
        raise ValueError("'expected' must be a string")
    return EvalCase(
        line=line,
        id=_case_id(line, row.get("id")),
        scorers=_scorers(row.get("scorers"), expected),
        prompt=prompt,
        messages=messages,
        expected=expected,
        metadata=row.get("metadata"),
    )


def _prompt(row: dict[str, Any]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    if ("prompt" in row) == ("messages" in row):
        raise ValueError("give exactly one of 'prompt' and 'messages'")
    if "prompt" in row:
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("'prompt' is empty or not a string")
        return prompt, ()
    messages = parse_messages(row["messages"])
    if messages[-1][0] != "user":
        raise ValueError("the last message must be the user's: the model answers it")
    return None, messages


def _case_id(line: int, value: object) -> str:
    if value is None:
        return f"line-{line}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("'id' must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ValueError("'id' is empty")
    return text


def _scorers(value: object, expected: str | None) -> tuple[Scorer, ...]:
    if value is None:
        if expected is None:
            raise ValueError("no 'expected' and no 'scorers': nothing to score")
        value = list(DEFAULT_SCORERS)
    if not isinstance(value, list) or not value:
        raise ValueError("'scorers' must be a non-empty list")
    return tuple(
        parse_scorer(spec, expected, f"scorer {index}") for index, spec in enumerate(value)
    )
