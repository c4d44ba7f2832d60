"""``hearth create NAME -f Modelfile``: a model made of a base plus a Modelfile's layers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hearth.cli.console import err, out
from hearth.cli.remote import running_server
from hearth.cli.store_cmds import human_size, open_store
from hearth.client import HearthClient
from hearth.errors import ModelfileError
from hearth.modelfile import Recipe, parse_modelfile
from hearth.modelfile.create import create_model


def create(
    name: Annotated[str, typer.Argument(help="Name of the new model, e.g. acme/support:v1")],
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The Modelfile (default: ./Modelfile)")
    ] = Path("Modelfile"),
) -> None:
    """Create a model from a Modelfile (FROM, SYSTEM, TEMPLATE, PARAMETER, MESSAGE, ADAPTER,
    LICENSE). Paths in it are relative to the Modelfile's folder. With a server running on
    HEARTH_HOST, the model is created there (local files are uploaded)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelfileError(f"cannot read {file}: {error}") from None
    recipe = parse_modelfile(text, file.resolve().parent)
    with running_server() as client:
        if client is not None:
            for status in client.create(_request_body(client, name, recipe)):
                _say(status)
            out.print(f"created {name}")
            return
    model = create_model(open_store(), name, recipe, _say)
    out.print(f"created {model.name} ({human_size(model.size)}, id {model.short_id})")


def _say(status: str) -> None:
    err.print(f"[dim]{status}[/]", highlight=False)


def _request_body(client: HearthClient, name: str, recipe: Recipe) -> dict[str, Any]:
    """The recipe as ``/api/create`` takes it; local files are uploaded as blobs first."""
    body: dict[str, Any] = {
        "model": name,
        "system": recipe.system,
        "template": recipe.template,
        "parameters": recipe.parameters or None,
        "license": recipe.licenses or None,
    }
    if recipe.messages is not None:
        body["messages"] = [{"role": role, "content": text} for role, text in recipe.messages]
    if recipe.base_is_path:
        base = Path(recipe.base)
        if not base.is_file():
            raise ModelfileError(f"FROM {base}: no such file")
        _say(f"uploading {base.name}")
        body["files"] = {base.name: client.upload_blob(base)}
    else:
        body["from"] = recipe.base
    for adapter in recipe.adapters:
        if not adapter.is_file():
            raise ModelfileError(f"ADAPTER {adapter}: no such file")
    if recipe.adapters:
        _say("uploading adapters")
        body["adapters"] = {path.name: client.upload_blob(path) for path in recipe.adapters}
    return {key: value for key, value in body.items() if value is not None}
