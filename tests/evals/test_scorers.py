"""Scorers as pure logic: each one passes a good answer and fails a bad one, and refuses bad
options with the reason."""

from __future__ import annotations

import time

import pytest

from hearth.evals.judge import grading_prompt, parse_verdict
from hearth.evals.scorers import (
    ContainsScorer,
    ExactScorer,
    JudgeScorer,
    Score,
    normalize,
    parse_scorer,
)


def score(spec: object, answer: str, expected: str | None = "Paris") -> Score:
    scorer = parse_scorer(spec, expected, "scorer 0")
    assert not isinstance(scorer, JudgeScorer)
    return scorer.score(answer)


def test_normalize_steps_apply_in_a_fixed_order() -> None:
    text = "\n  Hello,   WORLD!\nsecond line"
    assert normalize(text, frozenset()) == text
    assert normalize(text, frozenset({"whitespace"})) == "Hello, WORLD! second line"
    assert normalize(text, frozenset({"first_line", "case", "punctuation", "whitespace"})) == (
        "hello world"
    )


def test_exact_defaults_to_whitespace_only() -> None:
    assert score("exact", "  Paris \n").passed
    failed = score("exact", "paris")
    assert not failed.passed
    assert failed.detail == "expected 'Paris', got 'paris'"


def test_exact_with_normalisation() -> None:
    spec = {"type": "exact", "normalize": ["case", "punctuation", "whitespace", "first_line"]}
    assert score(spec, " paris.\nIt is a city.").passed
    assert not score(spec, "Lyon.\nParis").passed


def test_contains_uses_expected_or_its_own_text() -> None:
    assert score("contains", "It is Paris, of course").passed
    assert not score("contains", "It is Lyon").passed
    own = {"type": "contains", "text": "city", "normalize": ["case"]}
    assert score(own, "A CITY", expected=None).passed
    assert not score(own, "a town", expected=None).passed


def test_regex_searches_and_names_the_pattern_when_it_fails() -> None:
    spec = {"type": "regex", "pattern": r"^\s*(?i:paris)\b"}
    assert score(spec, " PARIS is big").passed
    failed = score(spec, "I think Paris")
    assert not failed.passed
    assert "no match" in failed.detail


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+$", "nested quantifiers"),
        ("(", "invalid regular expression"),
        ("a*", "matches the empty string"),
        (r"(a)\1", "back-references"),
    ],
)
def test_regex_refuses_bad_and_risky_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_scorer({"type": "regex", "pattern": pattern}, None, "scorer 2")
    assert str(caught.value).startswith("scorer 2:")


def test_regex_times_out_instead_of_stalling() -> None:
    # Not catastrophic, but slow enough on a long answer to run past the time limit.
    spec = {"type": "regex", "pattern": r"(?:a|aa|aaa|aaaa)[0-9]{1,9}z"}
    started = time.monotonic()
    result = score(spec, "a" * 2_000_000)
    assert not result.passed
    assert result.detail == "the pattern ran past its time limit"
    assert time.monotonic() - started < 5


def test_json_validity_and_fences() -> None:
    assert score("json", '{"a": 1}').passed
    assert score("json", '```json\n{"a": 1}\n```').passed
    failed = score("json", '{"a": 1} and more')
    assert not failed.passed
    assert failed.detail.startswith("not JSON (Extra data")


def test_json_against_the_case_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    spec = {"type": "json", "schema": schema}
    assert score(spec, '{"city": "Paris"}').passed
    wrong_type = score(spec, '{"city": 3}')
    assert not wrong_type.passed
    assert "is not of type 'string'" in wrong_type.detail
    assert "/city" in wrong_type.detail
    assert "'city' is a required property" in score(spec, "{}").detail


def test_json_refuses_an_invalid_schema() -> None:
    with pytest.raises(ValueError, match="invalid JSON schema"):
        parse_scorer({"type": "json", "schema": {"type": "nonsense"}}, None, "scorer 0")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bleu", "unknown scorer type 'bleu'"),
        (42, "a scorer is a name or an object"),
        ({"pattern": "x"}, "unknown scorer type None"),
        ({"type": "regex"}, "regex needs a 'pattern'"),
        ({"type": "exact", "normalise": ["case"]}, "unknown option(s) for exact: normalise"),
        ({"type": "exact", "normalize": ["lower"]}, "unknown normalize step(s) ['lower']"),
        ({"type": "exact", "normalize": "case"}, "'normalize' must be a list"),
        ({"type": "judge", "scale": "1-10"}, "'scale' must be 'pass_fail' or '1-5'"),
        ({"type": "judge", "threshold": 4}, "'threshold' applies to scale '1-5' only"),
        ({"type": "judge", "scale": "1-5", "threshold": True}, "'threshold' must be an integer"),
        ({"type": "contains", "name": ""}, "'name' must not be empty"),
        ({"type": "contains", "text": "   "}, "empty after normalising"),
    ],
)
def test_bad_scorer_options_are_refused_with_the_reason(spec: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_scorer(spec, "x", "scorer 1")
    assert message in str(caught.value)


def test_scorers_that_compare_need_an_expected_answer() -> None:
    for kind in ("exact", "contains"):
        with pytest.raises(ValueError, match=f"{kind} needs the case's 'expected' answer"):
            parse_scorer(kind, None, "scorer 0")


def test_a_named_scorer_reports_under_its_name() -> None:
    scorer = parse_scorer({"type": "contains", "name": "mentions-paris"}, "Paris", "scorer 0")
    assert isinstance(scorer, ContainsScorer)
    assert scorer.score("Lyon") == Score(
        "mentions-paris", False, detail="'Paris' not in the answer"
    )
    assert parse_scorer("exact", "x", "s") == ExactScorer("exact", "x")


PASS_FAIL = JudgeScorer("judge")
FIVE = JudgeScorer("judge", scale="1-5", threshold=4)


@pytest.mark.parametrize(
    ("reply", "passed", "value"),
    [
        ("PASS", True, 1.0),
        ("FAIL", False, 0.0),
        (" pass.", True, 1.0),
        ("The answer FAILED to mention it", False, 0.0),
        ("Verdict: Passes; it would fail only if", True, 1.0),
    ],
)
def test_pass_fail_verdicts(reply: str, passed: bool, value: float) -> None:
    verdict = parse_verdict(reply, PASS_FAIL)
    assert (verdict.passed, verdict.value) == (passed, value)


@pytest.mark.parametrize(
    ("reply", "passed", "value"),
    [
        ("5", True, 5.0),
        ("4", True, 4.0),
        ("3", False, 3.0),
        ("Score: 2", False, 2.0),
        ("I give it 4/5.", True, 4.0),
        ("Out of 1 to 5: 3/5", False, 3.0),
    ],
)
def test_scale_verdicts_pass_at_the_threshold(reply: str, passed: bool, value: float) -> None:
    verdict = parse_verdict(reply, FIVE)
    assert (verdict.passed, verdict.value) == (passed, value)


@pytest.mark.parametrize(
    ("reply", "scorer"),
    [("maybe", PASS_FAIL), ("", PASS_FAIL), ("6", FIVE), ("3.5", FIVE), ("50%", FIVE)],
)
def test_unreadable_verdicts_fail_and_say_so(reply: str, scorer: JudgeScorer) -> None:
    verdict = parse_verdict(reply, scorer)
    assert not verdict.passed
    assert verdict.value is None
    assert verdict.detail.startswith("unreadable verdict from the judge")


def test_grading_prompt_holds_question_reference_answer_and_criteria() -> None:
    scorer = JudgeScorer("judge", scale="1-5", criteria="Be strict.")
    prompt = grading_prompt("Capital of France?", "Paris", "Lyon", scorer)
    for part in ("Capital of France?", "Reference answer:\nParis", "Answer to grade:\nLyon"):
        assert part in prompt
    assert "Criteria: Be strict." in prompt
    assert "one digit from 1" in prompt
    assert prompt.endswith("Verdict:")
    assert "Reference answer" not in grading_prompt("Q", None, "", PASS_FAIL)
    assert "(empty)" in grading_prompt("Q", None, "", PASS_FAIL)
