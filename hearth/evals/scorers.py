"""Scorers: does an answer pass? Each is pure logic over the answer's text.

A case names its scorers by type (``"exact"``) or as an object with options
(``{"type": "regex", "pattern": "^Paris\\b"}``); :func:`parse_scorer` checks the options when the
test set is loaded, so a bad pattern or schema is reported with its line before any model runs.
The judge scorer (:class:`JudgeScorer`) needs a model; :mod:`hearth.evals.judge` grades it.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hearth.errors import UnsafePatternError
from hearth.safety.rules import Rule, RuleTimeout, compile_pattern

NORMALIZERS = ("first_line", "case", "punctuation", "whitespace")  # applied in this order
DEFAULT_NORMALIZE = frozenset({"whitespace"})
REGEX_TIMEOUT_S = 0.1  # per answer; answers are at most max_tokens long
Scale = Literal["pass_fail", "1-5"]


@dataclass(frozen=True)
class Score:
    """One scorer's verdict on one answer. ``value`` is the judge's 1-5 score (1.0 / 0.0 for
    PASS / FAIL), None for the text scorers; ``detail`` says why an answer failed."""

    scorer: str
    passed: bool
    value: float | None = None
    detail: str = ""


class TextScorer(Protocol):
    name: str  # the label reports group results under (the type unless the case names it)

    def score(self, answer: str) -> Score: ...


def normalize(text: str, steps: frozenset[str]) -> str:
    """``text`` through the chosen steps, in the order of NORMALIZERS."""
    if "first_line" in steps:
        text = next((line for line in text.splitlines() if line.strip()), "")
    if "case" in steps:
        text = text.casefold()
    if "punctuation" in steps:
        text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
    if "whitespace" in steps:
        text = " ".join(text.split())
    return text


@dataclass(frozen=True)
class ExactScorer:
    name: str
    expected: str
    steps: frozenset[str] = DEFAULT_NORMALIZE

    def score(self, answer: str) -> Score:
        wanted = normalize(self.expected, self.steps)
        got = normalize(answer, self.steps)
        if got == wanted:
            return Score(self.name, True)
        return Score(self.name, False, detail=f"expected {wanted!r}, got {_clip(got)!r}")


@dataclass(frozen=True)
class ContainsScorer:
    name: str
    text: str
    steps: frozenset[str] = DEFAULT_NORMALIZE

    def score(self, answer: str) -> Score:
        wanted = normalize(self.text, self.steps)
        if wanted in normalize(answer, self.steps):
            return Score(self.name, True)
        return Score(self.name, False, detail=f"{wanted!r} not in the answer")


@dataclass(frozen=True)
class RegexScorer:
    """Passes when the pattern matches anywhere in the answer (anchor it with ``^``/``$``).
    Patterns are compiled like hearth.toml's safety rules: risky constructs are refused and
    matching runs under a time limit."""

    name: str
    rule: Rule

    def score(self, answer: str) -> Score:
        try:
            matched = bool(self.rule.spans(answer))
        except RuleTimeout:
            return Score(self.name, False, detail="the pattern ran past its time limit")
        if matched:
            return Score(self.name, True)
        return Score(self.name, False, detail=f"no match for {self.rule.pattern.pattern!r}")


@dataclass(frozen=True)
class JsonScorer:
    """Passes when the answer is one JSON value (a Markdown code fence around it is allowed),
    valid against ``schema`` when the case gives one."""

    name: str
    schema: dict[str, Any] | None = None

    def score(self, answer: str) -> Score:
        try:
            value = json.loads(_unfenced(answer))
        except json.JSONDecodeError as error:
            return Score(self.name, False, detail=f"not JSON ({error.msg} at {error.pos})")
        if self.schema is not None:
            problem = _schema_problem(value, self.schema)
            if problem is not None:
                return Score(self.name, False, detail=f"does not match the schema: {problem}")
        return Score(self.name, True)


@dataclass(frozen=True)
class JudgeScorer:
    """Graded by another model (``hearth eval --judge MODEL``): PASS/FAIL, or a score from 1 to
    5 that passes at ``threshold`` or above. ``criteria`` is added to the grading prompt."""

    name: str
    scale: Scale = "pass_fail"
    threshold: int = 4
    criteria: str = ""


Scorer = ExactScorer | ContainsScorer | RegexScorer | JsonScorer | JudgeScorer


@dataclass
class _Spec:
    """A scorer object being parsed: its options, and the case's expected answer."""

    kind: str
    options: dict[str, Any]
    expected: str | None
    where: str
    used: set[str] = field(default_factory=set)

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        """Option ``key`` (ValueError unless it is a ``kind``), or ``default`` when absent."""
        self.used.add(key)
        if key not in self.options:
            return default
        value = self.options[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"{self.where}: {key!r} must be {_TYPE_NAMES[kind]}")
        return value


def parse_scorer(spec: object, expected: str | None, where: str) -> Scorer:
    """A scorer from its name or object; ValueError (prefixed with ``where``) if unusable."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a scorer is a name or an object with a 'type'")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _BUILDERS:
        raise ValueError(f"{where}: unknown scorer type {kind!r} (use {', '.join(_BUILDERS)})")
    parsed = _Spec(kind, {k: v for k, v in spec.items() if k != "type"}, expected, where)
    name = parsed.get("name", str, kind)
    if not name.strip():
        raise ValueError(f"{where}: 'name' must not be empty")
    scorer = _BUILDERS[kind](parsed, name)
    unknown = sorted(set(parsed.options) - parsed.used)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) for {kind}: {', '.join(unknown)}")
    return scorer


def _exact(spec: _Spec, name: str) -> Scorer:
    return ExactScorer(name, _needs_expected(spec), _steps(spec))


def _contains(spec: _Spec, name: str) -> Scorer:
    text = spec.get("text", str) or _needs_expected(spec)
    steps = _steps(spec)
    if not normalize(text, steps):
        raise ValueError(f"{spec.where}: the text to look for is empty after normalising")
    return ContainsScorer(name, text, steps)


def _regex(spec: _Spec, name: str) -> Scorer:
    source = spec.get("pattern", str)
    if source is None:
        raise ValueError(f"{spec.where}: regex needs a 'pattern'")
    try:
        pattern = compile_pattern(source, spec.where)
    except UnsafePatternError as error:
        raise ValueError(str(error)) from None
    return RegexScorer(name, Rule(name, pattern, REGEX_TIMEOUT_S))


def _json(spec: _Spec, name: str) -> Scorer:
    schema = spec.get("schema", dict)
    if schema is not None:
        _check_schema(schema, spec.where)
    return JsonScorer(name, schema)


def _judge(spec: _Spec, name: str) -> Scorer:
    scale = spec.get("scale", str, "pass_fail")
    if scale not in ("pass_fail", "1-5"):
        raise ValueError(f"{spec.where}: 'scale' must be 'pass_fail' or '1-5', not {scale!r}")
    threshold = spec.get("threshold", int, 4)
    if not 1 <= threshold <= 5:
        raise ValueError(f"{spec.where}: 'threshold' must be between 1 and 5")
    if "threshold" in spec.options and scale != "1-5":
        raise ValueError(f"{spec.where}: 'threshold' applies to scale '1-5' only")
    criteria = spec.get("criteria", str, "")
    return JudgeScorer(name, scale, threshold, criteria.strip())


_BUILDERS: dict[str, Callable[[_Spec, str], Scorer]] = {
    "exact": _exact,
    "contains": _contains,
    "regex": _regex,
    "json": _json,
    "judge": _judge,
}
SCORER_TYPES = tuple(_BUILDERS)


def _needs_expected(spec: _Spec) -> str:
    if spec.expected is None:
        raise ValueError(f"{spec.where}: {spec.kind} needs the case's 'expected' answer")
    return spec.expected


def _steps(spec: _Spec) -> frozenset[str]:
    steps = spec.get("normalize", list, sorted(DEFAULT_NORMALIZE))
    unknown = [s for s in steps if s not in NORMALIZERS]
    if unknown:
        raise ValueError(
            f"{spec.where}: unknown normalize step(s) {unknown} (use {', '.join(NORMALIZERS)})"
        )
    return frozenset(steps)


def _check_schema(schema: dict[str, Any], where: str) -> None:
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as error:
        raise ValueError(f"{where}: invalid JSON schema: {error.message}") from None


def _schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    from jsonschema import exceptions, validators

    validator = validators.validator_for(schema)(schema)
    error = exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{error.message} (at /{where})" if where else error.message


def _unfenced(answer: str) -> str:
    """The answer, or the inside of one Markdown code fence that is all of it."""
    text = answer.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        inner = text[3:-3]
        first_newline = inner.find("\n")
        # The fence's info string (```json) runs to the first newline.
        return inner[first_newline + 1 :] if first_newline >= 0 else inner
    return text


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}
