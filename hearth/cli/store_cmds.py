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
from hearth.config import get_settings
from hearth.store import LocalModel, MediaType, Store


def open_store() -> Store:
    return Store(get_settings())


def pull(name: Annotated[str, typer.Argument(help="Model name, e.g. gemma3:270m")]) -> None:
    """Download a model into the store (catalogue names for now)."""
    with byte_progress(f"pulling {name}") as progress:
        model = open_store().pull(name, progress=progress)
    out.print(f"pulled {model.name} ({human_size(model.size)}, id {model.short_id})")


def import_model(
    path: Annotated[
        Path, typer.Argument(help="A GGUF file, or a Hugging Face safetensors folder to convert")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Name to store it under")],
) -> None:
    """Import a local GGUF file, or convert a Hugging Face model folder, into the store."""
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
) -> None:
    """Show a model's details (or, with --license, its license text)."""
    store = open_store()
    model = store.resolve(name)
    if license:
        _print_license(store, model)
        return
    for label, value in _details(model):
        out.print(f"  {label:<16}{value}", soft_wrap=True, markup=False, emoji=False)


def rm(names: Annotated[list[str], typer.Argument(help="Model names")]) -> None:
    """Remove models; blobs no other model uses are deleted."""
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
