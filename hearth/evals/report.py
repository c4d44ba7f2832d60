"""The evaluation as tables for the terminal: one row per model, and, on request, every case."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from hearth.evals.results import EvalRun, ModelResult

NO_FIGURE = "—"
ANSWER_WIDTH = 48


def summary_table(run: EvalRun) -> Table:
    """Per model: each scorer's pass rate, cases passing every scorer, speed and cost."""
    names = _scorer_names(run.models)
    currency = f" {run.hardware.currency}" if run.hardware else ""
    table = Table(box=None, pad_edge=False, header_style="bold", title="Evaluation")
    table.add_column("MODEL", no_wrap=True)
    for name in [*names, "all"]:
        table.add_column(name.upper(), justify="right", no_wrap=True)
    table.add_column("TOKENS/S", justify="right", no_wrap=True)
    table.add_column(f"COST/1M{currency}", justify="right", no_wrap=True)
    for model in run.models:
        rates = model.pass_rates()
        cells = [str(rates[name]) if name in rates else NO_FIGURE for name in [*names, "all"]]
        table.add_row(
            escape(model.name), *cells, _speed(model), _money(model.cost_per_million(run.hardware))
        )
    return table


def cases_table(run: EvalRun) -> Table:
    """Every case's answer and verdicts, model by model."""
    table = Table(box=None, pad_edge=False, header_style="bold", title="Cases")
    for column in ("CASE", "MODEL", "ANSWER", "SCORES"):
        table.add_column(column, no_wrap=column != "ANSWER", overflow="fold")
    for model in run.models:
        for result in model.cases:
            answer = result.error and f"[red]error: {escape(result.error)}[/]"
            marks = "  ".join(
                f"{'[green]✓' if s.passed else '[red]✗'} {escape(s.scorer)}[/]"
                for s in result.scores
            )
            table.add_row(
                escape(result.case.id),
                escape(model.name),
                answer or escape(_clip(result.answer)),
                marks,
            )
    return table


def failures(run: EvalRun) -> list[str]:
    """One line per failed score, for ``--show-cases``: which case, which model, and why."""
    lines = []
    for model in run.models:
        for result in model.cases:
            for score in result.scores:
                if not score.passed and score.detail:
                    lines.append(
                        f"{result.case.id} · {model.name} · {score.scorer}: {score.detail}"
                    )
    return lines


def _scorer_names(models: list[ModelResult]) -> list[str]:
    names: dict[str, None] = {}
    for model in models:
        for result in model.cases:
            for score in result.scores:
                names.setdefault(score.scorer)
    return list(names)


def _speed(model: ModelResult) -> str:
    rate = model.tokens_per_second
    return NO_FIGURE if rate is None else f"{rate:.1f}"


def _money(value: float | None) -> str:
    if value is None:
        return NO_FIGURE
    return f"{value:.2f}" if value >= 0.1 else f"{value:.4f}"


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ANSWER_WIDTH else flat[: ANSWER_WIDTH - 1] + "…"
