"""Answer every case with every model, in this process, then score the answers.

Models come from the :class:`ModelManager`, so names on one base (a Modelfile variant, a
fine-tuned adapter) share its load, and each name's view brings its own system prompt, template
and adapters. Answers are greedy (temperature 0) and made one case at a time: batching can
change a greedy answer at a close call between two tokens (docs/ARCHITECTURE.md, "Batch
invariance"), and one stream at a time is also what the speed figure measures. Judge scorers
are graded once every model has answered, so the judge model is loaded once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hearth.engine.llm import ModelView
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.errors import ContextOverflowError, EvalError, TemplateError
from hearth.evals.cases import EvalCase
from hearth.evals.judge import GRAMMARS, VERDICT_MAX_TOKENS, grading_prompt, parse_verdict
from hearth.evals.results import CaseResult, JudgeReply, ModelResult
from hearth.evals.scorers import JudgeScorer, Score
from hearth.store import LocalModel, Store

Progress = Callable[[int, int], None]  # (done, total)
# The request's own choices; the model's other defaults (stop strings, penalties) still apply.
_CHOSEN = frozenset({"temperature", "max_tokens"})
_JUDGE_CHOSEN = _CHOSEN | {"grammar"}
# Errors that belong to one case (its prompt is too long, the template refuses its messages).
_CASE_ERRORS = (ContextOverflowError, TemplateError)


@dataclass(frozen=True)
class EvalOptions:
    max_tokens: int = 64
    judge: str | None = None

    def answer_params(self) -> SamplingParams:
        return SamplingParams(temperature=0.0, max_tokens=self.max_tokens).chosen(_CHOSEN)


def check_models(store: Store, names: Sequence[str], judge: str | None = None) -> None:
    """Every model is in the store and is a causal LM; raises before any model is loaded."""
    seen: dict[str, str] = {}
    for name in names:
        model = _causal_model(store, name)
        if str(model.name) in seen:
            raise EvalError(f"{name} is named twice (as {seen[str(model.name)]} already)")
        seen[str(model.name)] = name
    if judge is not None:
        _causal_model(store, judge)


def _causal_model(store: Store, name: str) -> LocalModel:
    from hearth.finetune.base import NOT_CAUSAL

    model = store.resolve(name)  # ModelNotFoundError names it, with close matches
    arch = model.info.architecture
    if arch in NOT_CAUSAL:
        raise EvalError(
            f"{name} is a {arch} model, an encoder for embeddings, not a causal language "
            "model: it cannot answer prompts"
        )
    return model


def check_judge(cases: Sequence[EvalCase], judge: str | None) -> None:
    if judge is None and any(case.judged for case in cases):
        first = next(case for case in cases if case.judged)
        raise EvalError(
            f"line {first.line} uses the judge scorer: name a judge model with --judge MODEL"
        )


def run_eval(
    manager: ModelManager,
    names: Sequence[str],
    cases: Sequence[EvalCase],
    options: EvalOptions,
    progress: Progress | None = None,
) -> list[ModelResult]:
    """Answers, scores and timings of every model on every case."""
    check_judge(cases, options.judge)
    judged = sum(1 for case in cases for s in case.scorers if isinstance(s, JudgeScorer))
    ticker = _Ticker(progress, len(names) * (len(cases) + judged))
    results = [_answer_all(manager, name, cases, options, ticker) for name in names]
    if judged and options.judge is not None:
        _grade_all(manager, options.judge, results, ticker)
    for model in results:
        for result in model.cases:
            result.scores = score_case(result)
    return results


def _answer_all(
    manager: ModelManager,
    name: str,
    cases: Sequence[EvalCase],
    options: EvalOptions,
    ticker: _Ticker,
) -> ModelResult:
    started = time.monotonic()
    params = options.answer_params()
    with manager.acquire(name) as view:
        loaded = time.monotonic()
        answers = []
        for case in cases:
            answers.append(answer_case(view, case, params))
            ticker.tick()
    return ModelResult(name, loaded - started, answers)


def answer_case(view: ModelView, case: EvalCase, params: SamplingParams) -> CaseResult:
    """One greedy answer with its token counts and wall time."""
    started = time.monotonic()
    try:
        text, last = _generate(view, _case_tokens(view, case), params)
    except _CASE_ERRORS as error:
        return CaseResult(case, "", 0, 0, time.monotonic() - started, None, error=str(error))
    seconds = time.monotonic() - started
    return CaseResult(
        case, text, last.prompt_tokens, last.completion_tokens, seconds, last.finish_reason
    )


def _case_tokens(view: ModelView, case: EvalCase) -> list[int]:
    if case.prompt is not None:
        return view.prompt_tokens(case.prompt)
    return view.conversation_tokens([ChatMessage(role, text) for role, text in case.messages])


def _generate(view: ModelView, tokens: list[int], params: SamplingParams) -> tuple[str, _Last]:
    pieces: list[str] = []
    last = _Last()
    for output in view.generate(tokens, params)[0]:
        pieces.append(output.text)
        last = _Last(output.prompt_tokens, output.completion_tokens, output.finish_reason)
    return "".join(pieces), last


@dataclass(frozen=True)
class _Last:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


def _grade_all(
    manager: ModelManager, judge: str, results: Sequence[ModelResult], ticker: _Ticker
) -> None:
    with manager.acquire(judge) as view:
        for model in results:
            for result in model.cases:
                for index, scorer in enumerate(result.case.scorers):
                    if isinstance(scorer, JudgeScorer):
                        result.judge_replies.append(ask_judge(view, result, index, scorer))
                        ticker.tick()


def ask_judge(view: ModelView, result: CaseResult, index: int, scorer: JudgeScorer) -> JudgeReply:
    """The judge's verdict on one answer; none for a case that has no answer."""
    if result.error is not None:
        return JudgeReply(index, "", error="the case has no answer to grade")
    prompt = grading_prompt(result.case.question, result.case.expected, result.answer, scorer)
    params = SamplingParams(
        temperature=0.0, max_tokens=VERDICT_MAX_TOKENS, grammar=GRAMMARS[scorer.scale]
    ).chosen(_JUDGE_CHOSEN)
    try:
        text, _ = _generate(view, view.prompt_tokens(prompt), params)
    except _CASE_ERRORS as error:
        return JudgeReply(index, "", error=str(error))
    return JudgeReply(index, text)


def score_case(result: CaseResult) -> list[Score]:
    """Every scorer of the case on its answer, in the case's order."""
    replies = {reply.scorer: reply for reply in result.judge_replies}
    scores = []
    for index, scorer in enumerate(result.case.scorers):
        if result.error is not None:
            scores.append(Score(scorer.name, False, detail=f"no answer: {result.error}"))
        elif isinstance(scorer, JudgeScorer):
            scores.append(_judged(scorer, replies.get(index)))
        else:
            scores.append(scorer.score(result.answer))
    return scores


def _judged(scorer: JudgeScorer, reply: JudgeReply | None) -> Score:
    if reply is None:
        return Score(scorer.name, False, detail="not graded: no judge model")
    if reply.error is not None:
        return Score(scorer.name, False, detail=f"the judge could not answer: {reply.error}")
    return parse_verdict(reply.text, scorer)


class _Ticker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self._total = total
        self._done = 0

    def tick(self) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress(self._done, self._total)
