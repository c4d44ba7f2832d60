"""Shared terminal helpers for CLI commands: consoles, the error boundary, progress bars."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
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
    """Turn a HearthError, or a full disk, into one readable line on stderr and exit status 1.
    (Writes go through temp files that are removed on failure, so a full disk changes nothing.)"""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except HearthError as error:
            _fail(str(error))
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" ({error.filename})" if error.filename else ""
            _fail(f"no space left on the device{where}; nothing was changed")

    return wrapper


def _fail(message: str) -> NoReturn:
    # The message is escaped: model names and config text may contain [brackets].
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(1) from None


ProgressCallback = Callable[[int, int | None], None]


@contextmanager
def byte_progress(description: str) -> Iterator[ProgressCallback]:
    """A rich progress bar on stderr fed by ``callback(done_bytes, total_bytes)``, with rate
    and time left.

    The bar appears on the first callback only, so work that turns out to need no transfer
    (the model is already in the store) prints nothing.
    """
    columns = (DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with _lazy_progress(description, columns) as update:
        yield update


@contextmanager
def count_progress(description: str) -> Iterator[ProgressCallback]:
    """The same for counted steps (tensors quantized, ...): ``callback(done, total)``."""
    with _lazy_progress(description, (MofNCompleteColumn(), TimeRemainingColumn())) as update:
        yield update


@contextmanager
def _lazy_progress(
    description: str, columns: tuple[ProgressColumn, ...]
) -> Iterator[ProgressCallback]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), *columns, console=err)
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
