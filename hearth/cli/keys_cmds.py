"""API key and usage commands: ``keys create``, ``keys list``, ``keys revoke``, ``usage``.

They work on the database directly (HEARTH_DATABASE_URL), so they need no running server, and a
key created or revoked here takes effect on the server's next request. ``keys create`` prints the
secret alone on stdout (``SECRET=$(hearth keys create app-1)`` works) and everything else on
stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth.cli.console import err, out
from hearth.cli.store_cmds import relative_time
from hearth.cli.teams_cmds import (
    BudgetOption,
    ConcurrentOption,
    DailyOption,
    MonthlyOption,
    RpmOption,
    TpmOption,
    parse_limits,
)
from hearth.config import get_settings
from hearth.units import parse_moment

if TYPE_CHECKING:
    from hearth.server.keys import KeyInfo, KeyStore
    from hearth.server.usage import UsageRow

# SQLAlchemy (about 0.2 s to import) is imported inside the commands, so that every other
# `hearth` command starts without it.


class GroupBy(StrEnum):
    key = "key"
    model = "model"


def create(
    name: Annotated[str, typer.Argument(help="A name for the key, e.g. app-1")],
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated models the key may use, globs allowed (default: all)"),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="When it stops working: 30d, 12h, 2w, or a date (UTC)")
    ] = None,
    team: Annotated[str | None, typer.Option(help="Team the key belongs to")] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="May log in to the dashboard (/ui) and manage keys")
    ] = False,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    daily_tokens: DailyOption = None,
    monthly_tokens: MonthlyOption = None,
    concurrent: ConcurrentOption = None,
    monthly_budget: BudgetOption = None,
) -> None:
    """Create an API key and print its secret (shown this once only)."""
    when = None if expires is None else parse_moment(expires, "expires", now=_now())
    limits, _ = parse_limits(rpm, tpm, daily_tokens, monthly_tokens, concurrent, monthly_budget)
    with _key_store() as keys:
        created = keys.create(
            name, models=_split(models), expires=when, team=team, admin=admin, limits=limits
        )
    err.print(f"created API key {name!r} ({created.info.prefix}...)", markup=False)
    out.print(created.secret, markup=False, emoji=False, soft_wrap=True)
    err.print("[bold yellow]Store this secret now: it is shown only once and cannot be recovered.")


def list_keys() -> None:
    """List API keys (never their secrets)."""
    with _key_store() as keys:
        infos = keys.list()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "PREFIX", "TEAM", "MODELS", "CREATED", "EXPIRES", "LAST USED", "STATUS"):
        table.add_column(column, no_wrap=True)
    now = _now()
    for info in infos:
        table.add_row(*_key_cells(info, now))
    _print_table(table)
    if not infos:
        err.print("no API keys yet: create one with `hearth keys create NAME`", markup=False)


def revoke(
    name: Annotated[str, typer.Argument(help="The key's name (or its prefix, hth_...)")],
) -> None:
    """Revoke an API key; the server refuses it from its next request on."""
    with _key_store() as keys:
        info = keys.revoke(name)
    out.print(f"revoked API key {info.name!r} ({info.prefix}...)", markup=False)


def usage(
    by: Annotated[GroupBy, typer.Option("--by", help="Group by API key or by model")] = (
        GroupBy.key
    ),
    since: Annotated[
        str | None, typer.Option(help="Only requests since: 24h, 7d, or a date (UTC)")
    ] = None,
) -> None:
    """Show requests and tokens per API key or per model."""
    from hearth.db import open_database
    from hearth.server.usage import UsageLog

    start = None if since is None else parse_moment(since, "since", now=_now(), past=True)
    engine = open_database(get_settings())
    try:
        with UsageLog(engine) as log:
            rows = log.summary(since=start, group_by=by.value)
    finally:
        engine.dispose()
    _print_table(_usage_table(by, rows))


@contextmanager
def _key_store() -> Iterator[KeyStore]:
    from hearth.db import open_database
    from hearth.server.keys import KeyStore

    engine = open_database(get_settings())
    try:
        yield KeyStore(engine)
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _print_table(table: Table) -> None:
    """As wide as the table needs, even on a narrow terminal or a pipe: never cut a key name."""
    natural = out.measure(table, options=out.options.update(max_width=1000)).maximum
    console = out if natural <= out.width else Console(width=natural, highlight=False)
    console.print(table, crop=False)


def _split(models: str | None) -> list[str] | None:
    return None if models is None else [model.strip() for model in models.split(",")]


def _key_cells(info: KeyInfo, now: datetime) -> tuple[str, ...]:
    return (
        info.name,
        info.prefix,
        info.team or "-",
        escape(",".join(info.models)) if info.models is not None else "all",
        relative_time(info.created, now),
        info.expires.strftime("%Y-%m-%d %H:%M UTC") if info.expires else "never",
        relative_time(info.last_used, now) if info.last_used else "never",
        info.status(now),
    )


_USAGE_COLUMNS = (
    "REQUESTS", "ERRORS", "ABORTED", "FILTERED", "PROMPT", "COMPLETION", "CACHED", "TOTAL",
)  # fmt: skip


def _usage_table(by: GroupBy, rows: list[UsageRow]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column(by.value.upper(), no_wrap=True)
    for column in (*_USAGE_COLUMNS, "TTFT MS", "TIME MS"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        counts = (row.requests, row.errors, row.aborted, row.filtered, row.prompt_tokens)
        tokens = (row.completion_tokens, row.cached_tokens, row.total_tokens)
        ttft = "-" if row.mean_ttft_ms is None else f"{row.mean_ttft_ms:,.0f}"
        table.add_row(
            escape(row.group) if row.group is not None else "(no key)",
            *(f"{value:,}" for value in (*counts, *tokens)),
            ttft,
            f"{row.mean_duration_ms:,.0f}",
        )
    return table
