"""The `hearth` command. Each command group lives in a module of its own; this file wires them."""

from __future__ import annotations

import typer

from hearth import __version__
from hearth.cli import (
    cluster_cmds,
    cost_cmds,
    create_cmds,
    doctor_cmds,
    eval_cmds,
    finetune_cmds,
    integrity_cmds,
    keys_cmds,
    license_cmds,
    plan_cmds,
    quantize_cmds,
    registry_cmds,
    store_cmds,
    teams_cmds,
)
from hearth.cli import run as run_cmd
from hearth.cli import serve as serve_cmd
from hearth.cli.console import cli_errors, out
from hearth.config import ENVIRONMENT, get_settings
from hearth.log import configure_logging

app = typer.Typer(
    name="hearth",
    help="Hearth: run, serve, fine-tune and govern open-weight models on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
@cli_errors
def _setup() -> None:
    configure_logging(get_settings())


app.command("run")(cli_errors(run_cmd.run))
app.command("serve")(cli_errors(serve_cmd.serve))

app.command("pull")(cli_errors(store_cmds.pull))
app.command("import")(cli_errors(store_cmds.import_model))
app.command("list")(cli_errors(store_cmds.list_models))
app.command("ls", hidden=True)(cli_errors(store_cmds.list_models))
app.command("show")(cli_errors(store_cmds.show))
app.command("rm")(cli_errors(store_cmds.rm))
app.command("cp")(cli_errors(store_cmds.cp))
app.command("create")(cli_errors(create_cmds.create))
app.command("push")(cli_errors(registry_cmds.push))
app.command("verify")(cli_errors(integrity_cmds.verify_models))
app.command("gc")(cli_errors(integrity_cmds.gc))
app.command("export")(cli_errors(integrity_cmds.export))
app.command("quantize")(cli_errors(quantize_cmds.quantize))
app.command("plan")(cli_errors(plan_cmds.plan))
app.command("doctor")(cli_errors(doctor_cmds.doctor))
app.command("finetune")(cli_errors(finetune_cmds.finetune))
app.command("jobs")(cli_errors(finetune_cmds.jobs))
app.command("eval")(cli_errors(eval_cmds.eval_models))

cluster_app = typer.Typer(help="Hearth on a Ray cluster.", no_args_is_help=True)
cluster_app.command("status")(cli_errors(cluster_cmds.cluster_status))
app.add_typer(cluster_app, name="cluster")

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
keys_app.command("create")(cli_errors(keys_cmds.create))
keys_app.command("list")(cli_errors(keys_cmds.list_keys))
keys_app.command("revoke")(cli_errors(keys_cmds.revoke))
keys_app.command("set")(cli_errors(teams_cmds.set_key_limits))
app.add_typer(keys_app, name="keys")
app.command("usage")(cli_errors(keys_cmds.usage))
app.command("cost")(cli_errors(cost_cmds.cost))

teams_app = typer.Typer(
    help="Create, list and change teams and their limits.", no_args_is_help=True
)
teams_app.command("create")(cli_errors(teams_cmds.create))
teams_app.command("list")(cli_errors(teams_cmds.list_teams))
teams_app.command("set")(cli_errors(teams_cmds.set_limits))
app.add_typer(teams_app, name="teams")

license_app = typer.Typer(
    help="Check models' licenses against the organisation's policy.", no_args_is_help=True
)
license_app.command("check")(cli_errors(license_cmds.check))
license_app.command("list")(cli_errors(license_cmds.list_licenses))
app.add_typer(license_app, name="license")


@app.command("ps")
@cli_errors
def ps() -> None:
    """List the models a running server has loaded."""
    from rich.table import Table

    from hearth.cli.remote import running_server
    from hearth.client import ServerError

    with running_server() as client:
        if client is None:
            host = get_settings().host
            raise ServerError(f"no Hearth server answers on {host} (start one: hearth serve)")
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("NAME", "MEMORY", "CONTEXT", "UNTIL"):
            table.add_column(column, no_wrap=True)
        for model in client.loaded():
            table.add_row(
                model.name,
                f"{model.size / 2**20:.0f} MiB",
                str(model.context_length),
                model.expires_at,
            )
        out.print(table)


@app.command("env")
def env() -> None:
    """List the environment variables Hearth reads, with their defaults."""
    for var in ENVIRONMENT:
        out.print(f"[bold]{var.name}[/] (default {var.default!r})\n    {var.help}")


@app.command("version")
def version() -> None:
    """Print Hearth's version."""
    out.print(f"hearth {__version__}")


def main() -> None:
    app()
