"""Store commands: ``pull``, ``import``, ``list``, ``show``, ``rm``, ``cp``.

Plain functions with typer annotations; ``main.py`` registers them and turns a HearthError into
one line on stderr, so these simply raise. Tables and answers go to stdout, progress to stderr.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hearth.cli import license_cmds
from hearth.cli.console import byte_progress, out
from hearth.cli.integrity_cmds import import_bundle_file
from hearth.cli.remote import running_server
from hearth.config import get_settings
from hearth.errors import InvalidNameError
from hearth.server.ollama.convert import show_response
from hearth.store import MediaType, Store

HF_FILE = MediaType.HF_FILE


def open_store() -> Store:
    return Store(get_settings())


def pull(
    name: Annotated[str, typer.Argument(help="Model name, e.g. gemma3:270m")],
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Plain HTTP for a registry (loopback always is)")
    ] = False,
    accept_license: Annotated[
        bool, typer.Option("--accept-license", help="Accept the model's license terms (recorded)")
    ] = False,
) -> None:
    """Download a model into the store (catalogue, Hugging Face or an OCI registry); into a
    running server's store when one answers on HEARTH_HOST."""
    license_cmds.refuse_before_pull(name)
    with running_server() as client:
        if client is not None:
            with byte_progress(f"pulling {name}") as progress:
                for update in client.pull(name, insecure=insecure):
                    if update.completed is not None:
                        progress(update.completed, update.total)
            out.print(f"pulled {name}")
            return
    store = open_store()
    existed = license_cmds.model_exists(store, name)
    with byte_progress(f"pulling {name}") as progress:
        model = store.pull(name, progress=progress, insecure=insecure)
    license_cmds.admit_model(store, model, accepted=accept_license, existed=existed)
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
    accept_license: Annotated[
        bool, typer.Option("--accept-license", help="Accept the model's license terms (recorded)")
    ] = False,
    no_source: Annotated[
        bool,
        typer.Option("--no-source", help="Keep only the GGUF, not the folder's own files"),
    ] = False,
) -> None:
    """Import a local GGUF file, convert a Hugging Face model folder, or import a bundle."""
    if path.suffix == ".tar" and path.is_file():
        import_bundle_file(path)  # names come from the bundle
        return
    if name is None:
        raise InvalidNameError("--name is required (the name to store the model under)")
    store = open_store()
    existed = license_cmds.model_exists(store, name)
    if path.is_dir():
        with (
            byte_progress(f"converting {path.name}") as progress,
            byte_progress("keeping the source files") as kept,
        ):
            model = store.import_hf_dir(
                path, name, progress=progress, keep_source=not no_source, source_progress=kept
            )
    else:
        with byte_progress(f"importing {path.name}") as progress:
            model = store.import_gguf(path, name, progress=progress)
    license_cmds.admit_model(store, model, accepted=accept_license, existed=existed)
    out.print(f"imported {model.name} ({human_size(model.size)}, id {model.short_id})")


def list_models() -> None:
    """List the models in the store (a running server's, when one answers)."""
    with running_server() as client:
        if client is not None:
            rows = [
                (m.name, m.digest[:12], m.size, m.quantization, _parse_time(m.modified_at))
                for m in client.models()
            ]
            _print_models(rows)
            return
    rows = [
        (str(m.name), m.short_id, m.size, m.info.quantization, m.modified)
        for m in open_store().list()
    ]
    _print_models(rows)


def _print_models(rows: list[tuple[str, str, int, str, datetime]]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ID", "SIZE", "QUANT", "MODIFIED"):
        table.add_column(column, no_wrap=True)
    now = datetime.now(UTC)
    for name, short_id, size, quantization, modified in rows:
        table.add_row(name, short_id, human_size(size), quantization, relative_time(modified, now))
    out.print(table)


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def show(
    name: Annotated[str, typer.Argument(help="Model name")],
    license: Annotated[
        bool,
        typer.Option("--license", help="Print the license: terms, evidence, decision, text"),
    ] = False,
    modelfile: Annotated[
        bool, typer.Option("--modelfile", help="Print a Modelfile that rebuilds the model")
    ] = False,
) -> None:
    """Show a model's details (or its license and policy decision, or its Modelfile)."""
    if license:  # the decision needs this machine's policy and store (HEARTH_HOME)
        store = open_store()
        license_cmds.print_model_license(store, store.resolve(name))
        return
    with running_server() as client:
        if client is not None:
            _print_shown(client.show(name), license=license, modelfile=modelfile)
            return
    store = open_store()
    model = store.resolve(name)
    _print_shown(show_response(store, model), license=license, modelfile=modelfile)
    source = [layer.size for layer in model.manifest.layers if layer.media_type == HF_FILE]
    if source and not modelfile:
        _plain(f"  {'HF source':<16}{len(source)} files, {human_size(sum(source))}")


def _print_shown(shown: dict[str, Any], *, license: bool, modelfile: bool) -> None:
    if license:
        _plain(shown.get("license") or _no_license(shown["model_info"]))
    elif modelfile:
        _plain(shown["modelfile"], end="")
    else:
        for label, value in _details(shown) + _profile_details(shown):
            _plain(f"  {label:<16}{value}")


def _plain(text: str, end: str = "\n") -> None:
    # No markup: model texts (licenses, prompts) are untrusted and may contain [brackets].
    out.print(text, end=end, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _no_license(info: dict[str, Any]) -> str:
    license_id = info.get("hearth.license_id")
    hint = f" (license id: {license_id})" if license_id else ""
    return f"{info['hearth.name']} has no license text in the store{hint}"


def rm(names: Annotated[list[str], typer.Argument(help="Model names")]) -> None:
    """Remove models; blobs no other model uses are deleted.

    Through a running server (when one answers) a loaded model is unloaded first, and a model
    in use is refused. Without one, a server elsewhere that has the model loaded finishes its
    requests in flight (it keeps its mapping of the file) and answers 404 for new ones.
    """
    with running_server() as client:
        if client is not None:
            for name in names:
                client.delete(name)
                out.print(f"deleted {name}")
            return
    store = open_store()
    for name in names:
        freed = store.remove(name)
        out.print(f"deleted {name}" + (f" ({len(freed)} blobs freed)" if freed else ""))


def cp(
    src: Annotated[str, typer.Argument(help="Existing model")],
    dst: Annotated[str, typer.Argument(help="New name")],
) -> None:
    """Copy a model to a new name (no data is copied: both names share the blobs)."""
    with running_server() as client:
        if client is not None:
            client.copy(src, dst)
            out.print(f"copied {src} to {dst}")
            return
    model = open_store().copy(src, dst)
    out.print(f"copied {src} to {model.name}")


def _details(shown: dict[str, Any]) -> list[tuple[str, str]]:
    info = shown["model_info"]
    architecture = info["general.architecture"]
    context = info.get(f"{architecture}.context_length")
    return [
        ("name", info["hearth.name"]),
        ("architecture", architecture),
        ("parameters", format_parameters(info["general.parameter_count"])),
        ("quantization", info["hearth.quantization"]),
        ("context length", f"{context:,}" if context else "unknown"),
        ("license", info["hearth.license_id"] or "unknown"),
        ("chat template", "yes" if info["hearth.has_template"] else "none (base model)"),
        ("digest", info["hearth.digest"]),
        ("size", human_size(info["hearth.size"])),
        ("source", info["hearth.source"]),
    ]


def _profile_details(shown: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``hearth create`` added, one line each."""
    rows = []
    if shown["system"]:
        rows.append(("system", _one_line(shown["system"])))
    if shown["template"]:
        rows.append(("template", "custom (TEMPLATE)"))
    if shown["parameters"]:
        rows.append(("parameters", shown["parameters"].replace("\n", "; ")))
    if shown["messages"]:
        rows.append(("messages", f"{len(shown['messages'])} before each conversation"))
    adapters = shown["model_info"]["hearth.adapters"]
    if adapters:
        rows.append(("adapters", ", ".join(name[:19] for name in adapters)))
    return rows


def _one_line(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
