"""Store commands: ``pull``, ``import``, ``list``, ``show``, ``rm``, ``cp``.

Plain functions with typer annotations; ``main.py`` registers them and turns a HearthError into
one line on stderr, so these simply raise. Tables and answers go to stdout, progress to stderr.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hearth.cli.console import byte_progress, out
from hearth.cli.integrity_cmds import import_bundle_file
from hearth.config import get_settings
from hearth.errors import InvalidNameError
from hearth.modelfile.render import render_modelfile, render_parameters
from hearth.store import LocalModel, MediaType, Store
from hearth.store.profile import ModelProfile


def open_store() -> Store:
    return Store(get_settings())


def pull(
    name: Annotated[str, typer.Argument(help="Model name, e.g. gemma3:270m")],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plain HTTP for a registry (loopback always is)")
    ] = False,
) -> None:
    """Download a model into the store (catalogue, Hugging Face or an OCI registry)."""
    with byte_progress(f"pulling {name}") as progress:
        model = open_store().pull(name, progress=progress, insecure=insecure)
    out.print(f"pulled {model.name} ({human_size(model.size)}, id {model.short_id})")


def import_model(
    path: Annotated[
        Path,
        typer.Argument(
            help="A GGUF file, a Hugging Face safetensors folder to convert, or a bundle (.tar)"
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name to store it under (not for bundles)")
    ] = None,
) -> None:
    """Import a local GGUF file, convert a Hugging Face model folder, or import a bundle."""
    if path.suffix == ".tar" and path.is_file():
        import_bundle_file(path)  # names come from the bundle
        return
    if name is None:
        raise InvalidNameError("--name is required (the name to store the model under)")
    store = open_store()
    if path.is_dir():
        with byte_progress(f"converting {path.name}") as progress:
            model = store.import_hf_dir(path, name, progress=progress)
    else:
        with byte_progress(f"importing {path.name}") as progress:
            model = store.import_gguf(path, name, progress=progress)
    out.print(f"imported {model.name} ({human_size(model.size)}, id {model.short_id})")


def list_models() -> None:
    """List the models in the store."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ID", "SIZE", "QUANT", "MODIFIED"):
        table.add_column(column, no_wrap=True)
    now = datetime.now(UTC)
    for model in open_store().list():
        table.add_row(
            str(model.name),
            model.short_id,
            human_size(model.size),
            model.info.quantization,
            relative_time(model.modified, now),
        )
    out.print(table)


def show(
    name: Annotated[str, typer.Argument(help="Model name")],
    license: Annotated[bool, typer.Option("--license", help="Print the license text")] = False,
    modelfile: Annotated[
        bool, typer.Option("--modelfile", help="Print a Modelfile that rebuilds the model")
    ] = False,
) -> None:
    """Show a model's details (or its license text, or its Modelfile)."""
    store = open_store()
    model = store.resolve(name)
    if license:
        _print_license(store, model)
        return
    profile = store.profile(model)
    if modelfile:
        text = render_modelfile(model, profile, store.licenses(model))
        out.print(text, end="", markup=False, highlight=False, emoji=False)
        return
    for label, value in _details(model) + _profile_details(profile):
        out.print(f"  {label:<16}{value}", soft_wrap=True, markup=False, emoji=False)


def rm(names: Annotated[list[str], typer.Argument(help="Model names")]) -> None:
    """Remove models; blobs no other model uses are deleted.

    A running server that has the model loaded finishes its requests in flight (it keeps its
    mapping of the file) and answers 404 for new ones; DELETE /api/delete unloads it first.
    """
    store = open_store()
    for name in names:
        freed = store.remove(name)
        out.print(f"deleted {name}" + (f" ({len(freed)} blobs freed)" if freed else ""))


def cp(
    src: Annotated[str, typer.Argument(help="Existing model")],
    dst: Annotated[str, typer.Argument(help="New name")],
) -> None:
    """Copy a model to a new name (no data is copied: both names share the blobs)."""
    model = open_store().copy(src, dst)
    out.print(f"copied {src} to {model.name}")


def _details(model: LocalModel) -> list[tuple[str, str]]:
    info = model.info
    context = f"{info.context_length:,}" if info.context_length else "unknown"
    return [
        ("name", str(model.name)),
        ("architecture", info.architecture),
        ("parameters", format_parameters(info.parameter_count)),
        ("quantization", info.quantization),
        ("context length", context),
        ("license", info.license_id or "unknown"),
        ("chat template", "yes" if info.has_template else "none (base model)"),
        ("digest", model.manifest_digest),
        ("size", human_size(model.size)),
        ("source", info.source),
    ]


def _profile_details(profile: ModelProfile) -> list[tuple[str, str]]:
    """What ``hearth create`` added, one line each."""
    rows = []
    if profile.system is not None:
        rows.append(("system", _one_line(profile.system)))
    if profile.template is not None:
        rows.append(("template", "custom (TEMPLATE)"))
    if profile.parameters:
        rows.append(("parameters", render_parameters(profile.parameters).replace("\n", "; ")))
    if profile.messages:
        rows.append(("messages", f"{len(profile.messages)} before each conversation"))
    if profile.adapters:
        rows.append(("adapters", ", ".join(path.name[:19] for path in profile.adapters)))
    return rows


def _one_line(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _print_license(store: Store, model: LocalModel) -> None:
    text = store.read_layer(model, MediaType.LICENSE)
    if text is None:
        license_id = model.info.license_id
        hint = f" (license id: {license_id})" if license_id else ""
        out.print(f"{model.name} has no license text in the store{hint}")
        return
    # Plain print, no markup: license text is untrusted and may contain [brackets].
    out.print(text.decode("utf-8", errors="replace"), markup=False, highlight=False, emoji=False)


def human_size(size: int) -> str:
    """Decimal units, like download sizes are quoted: 253.1 MB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def format_parameters(count: int) -> str:
    """268098176 → 268.10M."""
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= threshold:
            return f"{count / threshold:.2f}{suffix}"
    return str(count)


def relative_time(then: datetime, now: datetime) -> str:
    """'just now', '2 minutes ago', '3 days ago'."""
    seconds = int((now - then).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, length in (
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("week", 7 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
