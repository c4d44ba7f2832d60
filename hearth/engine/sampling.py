"""Sampling parameters of one request: validated once, on creation, then immutable.

An invalid value raises :class:`hearth.errors.ValidationError` naming the parameter, which the
server turns into a 400 and the CLI into one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hearth.errors import ValidationError

MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256
MAX_TOP_LOGPROBS = 20  # as OpenAI: bounds the work per token
MAX_LOGIT_BIAS = 300
MAX_SEED = 2**32 - 2  # 2**32 - 1 is llama.cpp's "pick a random seed" sentinel
SPECULATIVE_METHODS = ("ngram", "draft", "off")  # see hearth.engine.speculative
MAX_DRAFT = 64  # draft tokens verified per request per step


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    grammar: str | None = None  # GBNF; see hearth.engine.grammar for JSON and JSON Schema
    logprobs: int | None = None  # None: off; k: the sampled token's logprob and the top k
    # Speculative decoding (docs/SPECULATIVE.md): "ngram" (prompt lookup), "draft" (the model's
    # draft model) or "off"; None: the model's or the engine's default. It never changes what
    # is generated, only how fast.
    speculative: str | None = None
    draft_max: int | None = None  # draft tokens per step; None: the engine's default
    # The fields the request chose; a model's own defaults (Modelfile PARAMETER) fill the
    # rest. None: every field is the caller's choice.
    explicit: frozenset[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_range("temperature", self.temperature, 0.0, 100.0)
        _check_int("top_k", self.top_k, 0, 1_000_000)
        _check_range("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _check_range("min_p", self.min_p, 0.0, 1.0)
        _check_range("typical_p", self.typical_p, 0.0, 1.0, low_open=True)
        _check_range("repeat_penalty", self.repeat_penalty, 0.0, 10.0, low_open=True)
        _check_int("repeat_last_n", self.repeat_last_n, -1, 1_000_000)
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        if self.max_tokens is not None:
            _check_int("max_tokens", self.max_tokens, 1, 10_000_000)
        _check_stop(self.stop)
        _check_logit_bias(self.logit_bias)
        if self.grammar is not None and (
            not isinstance(self.grammar, str) or not self.grammar.strip()
        ):
            raise ValidationError("grammar", self.grammar, "must be a non-empty GBNF string")
        if self.logprobs is not None:
            _check_int("logprobs", self.logprobs, 0, MAX_TOP_LOGPROBS)
        if self.speculative is not None and self.speculative not in SPECULATIVE_METHODS:
            raise ValidationError(
                "speculative", self.speculative, f"must be one of {', '.join(SPECULATIVE_METHODS)}"
            )
        if self.draft_max is not None:
            _check_int("draft_max", self.draft_max, 1, MAX_DRAFT)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def uses_penalties(self) -> bool:
        return (
            self.repeat_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )

    def chosen(self, names: frozenset[str]) -> SamplingParams:
        """A copy that records ``names`` as the request's own choices (see ``explicit``)."""
        return replace(self, explicit=names)

    def updated(self, **changes: Any) -> SamplingParams:
        """A copy with ``changes`` applied (validated like a new instance)."""
        unknown = set(changes) - PARAMETER_NAMES
        if unknown:
            name = sorted(unknown)[0]
            raise ValidationError(name, changes[name], "unknown sampling parameter")
        chosen = None if self.explicit is None else self.explicit | set(changes)
        return replace(self, **changes, explicit=chosen)

    def updated_from_text(self, name: str, raw: str) -> SamplingParams:
        """Apply one ``name value`` pair typed by a user (``/set parameter top_k 20``)."""
        if name not in PARAMETER_NAMES:
            raise ValidationError(name, raw, f"unknown parameter; known: {_known_names()}")
        if name == "stop":
            return self.updated(stop=(*self.stop, raw))
        if name in ("grammar", "speculative"):
            return self.updated(**{name: raw})
        if name == "logit_bias":
            raise ValidationError(name, raw, "set it through the API, as a token-to-bias map")
        return self.updated(**{name: _parse_scalar(name, raw)})

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SamplingParams:
        """From API-style options; a single stop string or a list becomes a tuple."""
        changes = dict(options)
        stop = changes.get("stop")
        if isinstance(stop, str):
            changes["stop"] = (stop,)
        elif isinstance(stop, list):
            changes["stop"] = tuple(stop)
        bias = changes.get("logit_bias")
        if isinstance(bias, Mapping):  # OpenAI's {"token id": bias}
            changes["logit_bias"] = tuple(_bias_pairs(bias))
        return cls().updated(**changes)


def _bias_pairs(bias: Mapping[Any, Any]) -> list[tuple[int, float]]:
    pairs = []
    for key, value in bias.items():
        try:
            pairs.append((int(key), float(value)))
        except (TypeError, ValueError):
            raise ValidationError("logit_bias", key, "keys must be token ids") from None
    return pairs


PARAMETER_NAMES = frozenset(f.name for f in fields(SamplingParams)) - {"explicit"}


def _known_names() -> str:
    return ", ".join(sorted(PARAMETER_NAMES))


def _parse_scalar(name: str, raw: str) -> float | int | None:
    if name in ("seed", "max_tokens", "draft_max") and raw.lower() in ("none", "null", "-1"):
        return None
    try:
        if name in _INT_FIELDS:
            return int(raw)
        return float(raw)
    except ValueError:
        expected = "an integer" if name in _INT_FIELDS else "a number"
        raise ValidationError(name, raw, f"must be {expected}") from None


_INT_FIELDS = frozenset({"top_k", "repeat_last_n", "seed", "max_tokens", "logprobs", "draft_max"})


def _check_range(
    name: str, value: object, low: float, high: float, *, low_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, value, "must be a number")
    if math.isnan(value) or value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValidationError(name, value, f"must be in {bracket}{low}, {high}]")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, value, "must be an integer")
    if not low <= value <= high:
        raise ValidationError(name, value, f"must be between {low} and {high}")


def _check_stop(stop: object) -> None:
    if not isinstance(stop, tuple) or not all(isinstance(s, str) for s in stop):
        raise ValidationError("stop", stop, "must be a tuple of strings")
    if len(stop) > MAX_STOP_STRINGS:
        raise ValidationError("stop", stop, f"at most {MAX_STOP_STRINGS} stop strings")
    for s in stop:
        if not s or len(s) > MAX_STOP_LENGTH:
            raise ValidationError("stop", s, f"must be 1 to {MAX_STOP_LENGTH} characters")


def _check_logit_bias(bias: object) -> None:
    if not isinstance(bias, tuple) or len(bias) > MAX_LOGIT_BIAS:
        raise ValidationError(
            "logit_bias", bias, f"must be at most {MAX_LOGIT_BIAS} (token, bias) pairs"
        )
    for pair in bias:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValidationError("logit_bias", pair, "each entry must be a (token id, bias) pair")
        token, value = pair
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise ValidationError("logit_bias", token, "token ids must be non-negative integers")
        _check_range("logit_bias", value, -100.0, 100.0)
