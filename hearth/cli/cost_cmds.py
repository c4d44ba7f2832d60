"""``hearth cost``: what tokens cost on this machine, measured, against hosted API prices.

It reads the usage records (HEARTH_DATABASE_URL) and hearth.toml's [hardware] profile; see
:mod:`hearth.governance.cost` for how busy time becomes a cost per 1M tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.console import err, out
from hearth.config import get_settings
from hearth.units import parse_moment

if TYPE_CHECKING:
    from hearth.governance.cost import CostReport, CostRow


class CostBy(StrEnum):
    model = "model"
    key = "key"
    team = "team"


def cost(
    by: Annotated[CostBy, typer.Option("--by", help="Group by model, API key or team")] = (
        CostBy.model
    ),
    since: Annotated[
        str | None, typer.Option(help="Only requests since: 24h, 30d, or a date (UTC)")
    ] = None,
) -> None:
    """Cost per 1M tokens per model, key or team, compared with hosted API prices."""
    from hearth.db import open_database
    from hearth.governance.cost import cost_report

    settings = get_settings()
    start = None if since is None else parse_moment(since, "since", now=_now(), past=True)
    engine = open_database(settings)
    try:
        report = cost_report(engine, settings.hardware, group_by=by.value, since=start)
    finally:
        engine.dispose()
    out.print(_cost_table(report), crop=False)
    if report.hardware is None:
        err.print(
            "no [hardware] profile in hearth.toml: add cost_per_hour (or purchase_price,"
            " amortisation_months, watts, price_per_kwh) to see costs",
            markup=False,
        )
    else:
        out.print(f"machine: {report.hardware.basis}", markup=False)
    out.print(_hosted_table(report), crop=False)
    out.print(
        f"hosted prices read {report.prices.read.isoformat()} ({report.prices.currency});"
        " they change often: refresh hearth/data/api_prices.toml before relying on them",
        markup=False,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _cost_table(report: CostReport) -> Table:
    currency = report.hardware.currency if report.hardware else ""
    table = Table(box=None, pad_edge=False, header_style="bold", title="Cost on this machine")
    table.add_column(report.group_by.upper(), no_wrap=True)
    for column in ("REQUESTS", "PROMPT", "COMPLETION", "TOKENS/S", f"COST {currency}", "PER 1M"):
        table.add_column(column.strip(), justify="right", no_wrap=True)
    for row in (*report.rows, report.total):
        table.add_row(*_cells(row, report))
    return table


def _cells(row: CostRow, report: CostReport) -> tuple[str, ...]:
    none = "(no key)" if report.group_by == "key" else "(no team)"
    speed = row.tokens_per_second
    return (
        escape(row.group) if row.group is not None else none,
        f"{row.requests:,}",
        f"{row.prompt_tokens:,}",
        f"{row.completion_tokens:,}",
        "-" if speed is None else f"{speed:,.1f}",
        "-" if row.cost is None else f"{row.cost:,.4f}",
        "-" if row.per_million is None else f"{row.per_million:,.4f}",
    )


def _hosted_table(report: CostReport) -> Table:
    share = report.input_share
    title = f"Hosted APIs, per 1M tokens ({share:.0%} prompt tokens, as measured here)"
    table = Table(box=None, pad_edge=False, header_style="bold", title=title)
    for column in ("VENDOR", "MODEL"):
        table.add_column(column, no_wrap=True)
    for column in ("INPUT", "OUTPUT", "AT THIS MIX"):
        table.add_column(column, justify="right", no_wrap=True)
    for price in report.prices.models:
        table.add_row(
            price.vendor,
            price.name,
            f"{price.input:,.2f}",
            f"{price.output:,.2f}",
            f"{price.blended(share):,.2f}",
        )
    return table
