"""Team commands (``teams create``, ``teams list``, ``teams set``) and the limit options that
``keys create`` and ``keys set`` share with them.

Limits are written as counts ("60", "20k", "2M") or, for ``--monthly-budget``, money in the
currency of hearth.toml's [hardware] profile; ``teams set`` and ``keys set`` take ``none`` to
remove a limit. Like ``hearth keys``, these work on the database directly: the server applies
a change from its next request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.console import out
from hearth.config import get_settings
from hearth.governance.limits import CLEAR, Limits, parse_count, parse_money

if TYPE_CHECKING:
    from hearth.governance.store import TeamStore

RpmOption = Annotated[str | None, typer.Option("--rpm", help="Requests per minute")]
TpmOption = Annotated[str | None, typer.Option("--tpm", help="Tokens per minute (e.g. 20k)")]
DailyOption = Annotated[
    str | None, typer.Option("--daily-tokens", help="Tokens per UTC day (e.g. 500k)")
]
MonthlyOption = Annotated[
    str | None, typer.Option("--monthly-tokens", help="Tokens per UTC month (e.g. 2M)")
]
ConcurrentOption = Annotated[
    str | None, typer.Option("--concurrent", help="Generations in flight at once")
]
BudgetOption = Annotated[
    str | None,
    typer.Option("--monthly-budget", help="Money per UTC month ([hardware] currency)"),
]


def parse_limits(
    rpm: str | None,
    tpm: str | None,
    daily_tokens: str | None,
    monthly_tokens: str | None,
    concurrent: str | None,
    monthly_budget: str | None,
) -> tuple[Limits, frozenset[str]]:
    """The limits given, and the names of those given as ``none`` (to remove)."""
    counts = {
        "rpm": rpm,
        "tpm": tpm,
        "daily_tokens": daily_tokens,
        "monthly_tokens": monthly_tokens,
        "concurrent": concurrent,
    }
    cleared = {name for name, text in counts.items() if text and text.lower() in CLEAR}
    values: dict[str, int | float] = {
        name: parse_count(text, name)
        for name, text in counts.items()
        if text is not None and name not in cleared
    }
    if monthly_budget is not None:
        if monthly_budget.lower() in CLEAR:
            cleared.add("monthly_budget")
        else:
            values["monthly_budget"] = parse_money(monthly_budget, "monthly_budget")
    return Limits(**values), frozenset(cleared)  # type: ignore[arg-type]


def create(
    name: Annotated[str, typer.Argument(help="A name for the team, e.g. search")],
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    daily_tokens: DailyOption = None,
    monthly_tokens: MonthlyOption = None,
    concurrent: ConcurrentOption = None,
    monthly_budget: BudgetOption = None,
) -> None:
    """Create a team with limits its keys share (give keys to it with `keys create --team`)."""
    limits, _ = parse_limits(rpm, tpm, daily_tokens, monthly_tokens, concurrent, monthly_budget)
    with _team_store() as teams:
        team = teams.create(name, limits)
    out.print(f"created team {team.name!r}: {team.limits.describe()}", markup=False)


def set_limits(
    name: Annotated[str, typer.Argument(help="The team")],
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    daily_tokens: DailyOption = None,
    monthly_tokens: MonthlyOption = None,
    concurrent: ConcurrentOption = None,
    monthly_budget: BudgetOption = None,
) -> None:
    """Change a team's limits (`none` removes one)."""
    limits, cleared = parse_limits(
        rpm, tpm, daily_tokens, monthly_tokens, concurrent, monthly_budget
    )
    with _team_store() as teams:
        team = teams.set(name, limits, cleared)
    out.print(f"team {team.name!r}: {team.limits.describe()}", markup=False)


def set_key_limits(
    name: Annotated[str, typer.Argument(help="The key's name (or its prefix, hth_...)")],
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    daily_tokens: DailyOption = None,
    monthly_tokens: MonthlyOption = None,
    concurrent: ConcurrentOption = None,
    monthly_budget: BudgetOption = None,
) -> None:
    """Change an API key's own limits (`none` removes one); its team's limits apply too."""
    from hearth.db import open_database
    from hearth.server.keys import KeyStore

    limits, cleared = parse_limits(
        rpm, tpm, daily_tokens, monthly_tokens, concurrent, monthly_budget
    )
    engine = open_database(get_settings())
    try:
        info = KeyStore(engine).set_limits(name, limits, cleared)
    finally:
        engine.dispose()
    out.print(f"API key {info.name!r}: {info.limits.describe()}", markup=False)


def list_teams() -> None:
    """List teams, their limits and the keys in each."""
    from hearth.db import open_database
    from hearth.governance.store import TeamStore
    from hearth.server.keys import KeyStore

    engine = open_database(get_settings())
    try:
        teams = TeamStore(engine).list()
        keys = KeyStore(engine).list()
    finally:
        engine.dispose()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TEAM", "KEYS", "LIMITS"):
        table.add_column(column, no_wrap=True)
    for team in teams:
        members = sum(1 for key in keys if key.team == team.name)
        table.add_row(escape(team.name), str(members), team.limits.describe())
    out.print(table, crop=False)
    if not teams:
        out.print("no teams yet: create one with `hearth teams create NAME`", markup=False)


@contextmanager
def _team_store() -> Iterator[TeamStore]:
    from hearth.db import open_database
    from hearth.governance.store import TeamStore

    engine = open_database(get_settings())
    try:
        yield TeamStore(engine)
    finally:
        engine.dispose()
