"""The judge scorer: another model grades an answer.

The judge answers a fixed grading prompt greedily, and a grammar lets it say nothing but the
verdict (``PASS``/``FAIL``, or one digit from 1 to 5), so even a small base model gives one
that can be read. :func:`parse_verdict` still reads whatever text it gets (a verdict inside a
sentence, ``4/5``, ``Score: 3``), so the parsing does not depend on the grammar; an answer it
cannot read fails the case and says so.
"""

from __future__ import annotations

import re

from hearth.evals.scorers import JudgeScorer, Score

VERDICT_MAX_TOKENS = 4
GRAMMARS = {"pass_fail": 'root ::= "PASS" | "FAIL"', "1-5": "root ::= [1-5]"}

_INSTRUCTIONS = {
    "pass_fail": "Reply with one word: PASS if the answer is correct, FAIL if it is not.",
    "1-5": "Reply with one digit from 1 (wrong) to 5 (fully correct).",
}
_PASS_FAIL = re.compile(r"\b(PASS(?:ED|ES)?|FAIL(?:ED|S)?)\b", re.IGNORECASE)
_OUT_OF_FIVE = re.compile(r"(?<![\d.])([1-5])\s*/\s*5\b")
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?![\d.]|\s*%)")


def grading_prompt(question: str, expected: str | None, answer: str, scorer: JudgeScorer) -> str:
    """The fixed prompt the judge model answers."""
    parts = [
        "You are grading an answer to a question.",
        f"Question:\n{question.strip()}",
    ]
    if expected is not None:
        parts.append(f"Reference answer:\n{expected.strip()}")
    parts.append(f"Answer to grade:\n{answer.strip() or '(empty)'}")
    if scorer.criteria:
        parts.append(f"Criteria: {scorer.criteria}")
    parts.append(_INSTRUCTIONS[scorer.scale])
    parts.append("Verdict:")
    return "\n\n".join(parts)


def parse_verdict(text: str, scorer: JudgeScorer) -> Score:
    """The judge's reply as a Score: ``value`` 1.0/0.0 for PASS/FAIL, or the 1-5 score."""
    if scorer.scale == "pass_fail":
        match = _PASS_FAIL.search(text)
        if match is not None:
            passed = match.group(1).upper().startswith("PASS")
            return Score(scorer.name, passed, 1.0 if passed else 0.0, f"verdict {match.group(1)}")
    else:
        match = _OUT_OF_FIVE.search(text) or _DIGIT.search(text)
        if match is not None:
            value = int(match.group(1))
            detail = f"verdict {value}/5 (passes at {scorer.threshold})"
            return Score(scorer.name, value >= scorer.threshold, float(value), detail)
    return Score(scorer.name, False, None, f"unreadable verdict from the judge: {text[:80]!r}")
