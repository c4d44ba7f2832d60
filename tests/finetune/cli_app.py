"""The fine-tuning commands in a typer app of their own, as hearth/cli/main.py registers them,
so the CLI tests can run them in a child process (real signals, real exit codes)."""

from __future__ import annotations

import typer

from hearth.cli import finetune_cmds
from hearth.cli.console import cli_errors

app = typer.Typer()
app.command("finetune")(cli_errors(finetune_cmds.finetune))
app.command("jobs")(cli_errors(finetune_cmds.jobs))

if __name__ == "__main__":
    app()
