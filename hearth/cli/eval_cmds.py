"""``hearth eval MODEL... --data tests.jsonl``: compare models on your own test set.

Everything a user can get wrong (a model not in the store, an embedding model, a bad line, a
judge scorer without --judge, a --json path in a folder that does not exist) is refused before
any model is loaded. Models run in this process, one case at a time (hearth.evals.runner).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from hearth.cli.console import count_progress, err, out
from hearth.config import Settings, get_settings
from hearth.errors import EvalError, ValidationError
from hearth.evals import (
    EvalCase,
    EvalOptions,
    EvalRun,
    ModelResult,
    check_judge,
    check_models,
    load_cases,
    run_eval,
)
from hearth.evals.report import cases_table, failures, summary_table
from hearth.store import Store


def eval_models(
    models: Annotated[list[str], typer.Argument(help="Models to compare (names in the store)")],
    data: Annotated[
        Path, typer.Option("--data", help="Test set: one JSON object a line (docs/EVAL.md)")
    ],
    max_tokens: Annotated[int, typer.Option(help="Most new tokens per answer")] = 64,
    judge: Annotated[str | None, typer.Option(help="Model that grades the 'judge' scorers")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Save answers, scores and timings here")
    ] = None,
    show_cases: Annotated[
        bool, typer.Option("--show-cases", help="Show every answer and why a score failed")
    ] = False,
) -> None:
    """Answer a test set with each model (greedy) and compare pass rates, speed and cost."""
    settings = get_settings()
    options = EvalOptions(max_tokens=_positive(max_tokens), judge=judge)
    store = Store(settings)
    check_models(store, models, judge)
    data = data.expanduser()
    cases = load_cases(data)
    check_judge(cases, judge)
    if json_out is not None:
        _check_writable(json_out.expanduser())
    if judge is not None and not any(case.judged for case in cases):
        err.print("[dim]no case uses the judge scorer: --judge is not needed[/]")
    results = _run(store, settings, models, cases, options)
    run = EvalRun(data, max_tokens, judge, settings.hardware, results)
    out.print(summary_table(run), crop=False)
    if settings.hardware is None:
        err.print(
            "cost per 1M tokens needs a [hardware] profile in hearth.toml (see hearth cost)",
            markup=False,
        )
    if show_cases:
        out.print(cases_table(run), crop=False)
        for line in failures(run):
            out.print(line, markup=False, highlight=False)
    if json_out is not None:
        _write_json(json_out.expanduser(), run)


def _run(
    store: Store,
    settings: Settings,
    models: list[str],
    cases: list[EvalCase],
    options: EvalOptions,
) -> list[ModelResult]:
    from hearth.engine.manager import ModelManager

    # One sequence and no prefix cache: the runner answers one case at a time.
    engine_settings = replace(settings, max_seqs=1, cache_seqs=0)
    with (
        ModelManager(store, engine_settings) as manager,
        count_progress("evaluating") as progress,
    ):
        return run_eval(manager, models, cases, options, progress)


def _positive(max_tokens: int) -> int:
    if max_tokens < 1:
        raise ValidationError("max_tokens", max_tokens, "must be at least 1")
    return max_tokens


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise EvalError(f"--json {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise EvalError(f"--json {path}: the folder {path.parent} does not exist")


def _write_json(path: Path, run: EvalRun) -> None:
    path.write_text(json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n")
    err.print(f"[dim]results saved to {path}[/]")
