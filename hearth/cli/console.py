"""Shared terminal helpers for CLI commands: consoles, the error boundary, progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hearth.errors import HearthError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a HearthError into one readable line on stderr and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HearthError as error:
            err.print(f"[bold red]error:[/] {error}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


ProgressCallback = Callable[[int, int | None], None]


@contextmanager
def byte_progress(description: str) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr fed by ``callback(done_bytes, total_bytes)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update
