"""``hearth doctor``: check this machine and the llama.cpp build, and say how to fix problems."""

from __future__ import annotations

from typing import Annotated

import typer

from hearth.cli.console import out
from hearth.config import get_settings
from hearth.doctor import Status, run_checks

_STYLE = {Status.OK: "[green]ok[/]  ", Status.WARN: "[yellow]warn[/]", Status.FAIL: "[red]fail[/]"}


def doctor(
    no_smoke: Annotated[
        bool, typer.Option("--no-smoke", help="Skip the one-token llama.cpp smoke test")
    ] = False,
) -> None:
    """Check cores, memory, GPU, CPU features, the llama.cpp build, models and the serve port."""
    checks = run_checks(get_settings(), smoke=not no_smoke)
    for check in checks:
        out.print(f"{_STYLE[check.status]} {check.name:<16} ", end="")
        out.print(check.message, markup=False)
        if check.fix:
            out.print(f"      fix: {check.fix}", markup=False, soft_wrap=True)
    if any(check.status is Status.FAIL for check in checks):
        raise typer.Exit(1)
