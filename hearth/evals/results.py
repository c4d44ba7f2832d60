"""What an evaluation found: answers, scores and timings per model, and their summaries.

Speed is completion tokens over generation wall time (from submitting a case to its last
token, prompt processing included; loading the model is not counted), one case at a time.
Cost per 1M tokens follows hearth.governance.cost: the machine's hourly cost (hearth.toml
``[hardware]``) divided by the tokens it makes in an hour, here at that single-stream speed, so
it is an upper bound for a server that batches requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.config import Hardware
from hearth.evals.cases import EvalCase
from hearth.evals.scorers import Score

MILLION = 1_000_000


@dataclass(frozen=True)
class JudgeReply:
    """What the judge model said about one answer (``error`` when it could not answer)."""

    scorer: int  # index into the case's scorers
    text: str
    error: str | None = None


@dataclass
class CaseResult:
    case: EvalCase
    answer: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # submit to last token
    finish_reason: str | None
    error: str | None = None  # the case could not be answered (context overflow, template)
    judge_replies: list[JudgeReply] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and all(score.passed for score in self.scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "line": self.case.line,
            "prompt": self.case.prompt,
            "messages": [{"role": r, "content": c} for r, c in self.case.messages] or None,
            "expected": self.case.expected,
            "metadata": self.case.metadata,
            "answer": self.answer,
            "error": self.error,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 4),
            "passed": self.passed,
            "scores": [score.__dict__ for score in self.scores],
            "judge_replies": [reply.__dict__ for reply in self.judge_replies],
        }


@dataclass(frozen=True)
class PassRate:
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.passed}/{self.total} ({self.rate:.0%})"


@dataclass
class ModelResult:
    name: str
    load_seconds: float
    cases: list[CaseResult]

    @property
    def completion_tokens(self) -> int:
        return sum(result.completion_tokens for result in self.cases)

    @property
    def prompt_tokens(self) -> int:
        return sum(result.prompt_tokens for result in self.cases)

    @property
    def generation_seconds(self) -> float:
        return sum(result.seconds for result in self.cases if result.error is None)

    @property
    def tokens_per_second(self) -> float | None:
        seconds = self.generation_seconds
        return self.completion_tokens / seconds if seconds > 0 and self.completion_tokens else None

    def pass_rates(self) -> dict[str, PassRate]:
        """Per scorer name (first seen first), then ``all``: cases that passed every scorer."""
        counts: dict[str, list[int]] = {}
        for result in self.cases:
            for score in result.scores:
                count = counts.setdefault(score.scorer, [0, 0])
                count[0] += score.passed
                count[1] += 1
        rates = {name: PassRate(passed, total) for name, (passed, total) in counts.items()}
        rates["all"] = PassRate(sum(r.passed for r in self.cases), len(self.cases))
        return rates

    def cost_per_million(self, hardware: Hardware | None) -> float | None:
        return cost_per_million(hardware, self.tokens_per_second)

    def to_dict(self, hardware: Hardware | None) -> dict[str, Any]:
        return {
            "name": self.name,
            "load_seconds": round(self.load_seconds, 3),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "generation_seconds": round(self.generation_seconds, 4),
            "tokens_per_second": self.tokens_per_second,
            "cost_per_million": self.cost_per_million(hardware),
            "pass_rates": {
                name: {"passed": rate.passed, "total": rate.total, "rate": rate.rate}
                for name, rate in self.pass_rates().items()
            },
            "cases": [result.to_dict() for result in self.cases],
        }


def cost_per_million(hardware: Hardware | None, tokens_per_second: float | None) -> float | None:
    """The machine's hourly cost over the tokens it makes in an hour, per 1M tokens; None
    without a [hardware] profile or a measured speed."""
    if hardware is None or not tokens_per_second:
        return None
    return hardware.cost_per_hour / (tokens_per_second * 3600) * MILLION


@dataclass(frozen=True)
class EvalRun:
    dataset: Path
    max_tokens: int
    judge: str | None
    hardware: Hardware | None
    models: list[ModelResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "cases": len(self.models[0].cases) if self.models else 0,
            "max_tokens": self.max_tokens,
            "judge": self.judge,
            "hardware": None
            if self.hardware is None
            else {"basis": self.hardware.basis, "currency": self.hardware.currency},
            "models": [model.to_dict(self.hardware) for model in self.models],
        }
