"""Logging setup: one call at process start (CLI, server, bench)."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

from hearth.config import Settings


def configure_logging(settings: Settings) -> None:
    # Logs go to stderr: stdout carries answers and tables that scripts read.
    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=settings.log_level, format="%(message)s", handlers=[handler])


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
