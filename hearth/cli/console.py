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
    TaskID,
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
    """A rich progress bar on stderr fed by ``callback(done_bytes, total_bytes)``.

    The bar appears on the first callback only, so work that turns out to need no transfer
    (the model is already in the store) prints nothing.
    """
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    progress = Progress(*columns, console=err, transient=False)
    task: list[TaskID] = []

    def update(done: int, total: int | None) -> None:
        if not task:
            progress.start()
            task.append(progress.add_task(description, total=total))
        progress.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task:
            progress.stop()
