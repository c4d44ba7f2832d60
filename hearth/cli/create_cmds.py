"""``hearth create NAME -f Modelfile``: a model made of a base plus a Modelfile's layers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hearth.cli.console import err, out
from hearth.cli.store_cmds import human_size, open_store
from hearth.errors import ModelfileError
from hearth.modelfile import parse_modelfile
from hearth.modelfile.create import create_model


def create(
    name: Annotated[str, typer.Argument(help="Name of the new model, e.g. acme/support:v1")],
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The Modelfile (default: ./Modelfile)")
    ] = Path("Modelfile"),
) -> None:
    """Create a model from a Modelfile (FROM, SYSTEM, TEMPLATE, PARAMETER, MESSAGE, ADAPTER,
    LICENSE). Paths in it are relative to the Modelfile's folder."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelfileError(f"cannot read {file}: {error}") from None
    recipe = parse_modelfile(text, file.resolve().parent)
    model = create_model(
        open_store(), name, recipe, lambda message: err.print(f"[dim]{message}[/]")
    )
    out.print(f"created {model.name} ({human_size(model.size)}, id {model.short_id})")
