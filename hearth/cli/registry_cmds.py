"""Registry commands: ``push`` (and ``pull``'s ``--insecure``, in store_cmds).

``hearth push NAME HOST/NS/NAME:TAG`` sends a local model to an OCI registry; credentials come
from HEARTH_REGISTRY_AUTH or ``~/.docker/config.json`` (docs/STORE.md, "OCI registries").
"""

from __future__ import annotations

from typing import Annotated

import typer

from hearth.cli.console import byte_progress, out
from hearth.cli.store_cmds import open_store

INSECURE_HELP = "Use plain HTTP for this registry (loopback hosts always do)"


def push(
    name: Annotated[str, typer.Argument(help="Local model, e.g. gemma3:270m")],
    target: Annotated[str, typer.Argument(help="Where to push: host[:port]/namespace/name:tag")],
    insecure: Annotated[bool, typer.Option("--insecure", help=INSECURE_HELP)] = False,
) -> None:
    """Push a model to an OCI registry (blobs the registry has are not sent again)."""
    with byte_progress(f"pushing {name}") as progress:
        result = open_store().push(name, target, progress=progress, insecure=insecure)
    sent = len(result.uploaded)
    reused = len(result.skipped) + len(result.mounted)
    out.print(
        f"pushed {name} to {result.target.full} "
        f"({sent} blobs uploaded, {reused} already there; digest {result.manifest_digest})"
    )
