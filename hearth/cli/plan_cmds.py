"""``hearth plan``: memory a model needs at a context and parallelism, per quantization, before
loading (or downloading) it. See docs/PLANNING.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hearth.cli.console import out
from hearth.cli.store_cmds import format_parameters
from hearth.config import get_settings
from hearth.plan import (
    ModelHeader,
    PlanRequest,
    available_memory,
    make_plan,
    read_local_header,
    read_remote_gguf_shape,
)
from hearth.store import Store
from hearth.units import format_size, parse_size


def plan(
    name: Annotated[str, typer.Argument(help="A stored model, a GGUF path, or an http(s) URL")],
    context: Annotated[int, typer.Option("--context", "-c", help="Tokens per sequence")] = 4096,
    parallel: Annotated[int, typer.Option("--parallel", "-p", help="Sequences at once")] = 1,
    memory: Annotated[
        str | None, typer.Option("--memory", "-m", help="Memory to fit in (16GiB, 512M)")
    ] = None,
    kv_type: Annotated[
        str, typer.Option("--kv-type", help="KV cache type: f16, q8_0, q4_0")
    ] = "f16",
    batch: Annotated[int, typer.Option("--batch", help="Micro-batch (tokens)")] = 512,
) -> None:
    """Show how much memory a model needs, which quantization fits and the largest context."""
    budget = parse_size(memory, "memory") if memory else available_memory()
    request = PlanRequest(context, parallel, budget, batch=batch, kv_type=kv_type)
    result = make_plan(_header(name), request)
    shape = result.model.header.shape
    out.print(
        f"{name}: {shape.architecture}, {format_parameters(result.parameters)} parameters, "
        f"{shape.n_layers} layers, training context {shape.context_length or 'unknown'}, "
        f"now {result.quantization or 'unknown'}",
        markup=False,
    )
    out.print(
        f"plan: {parallel} × {context} tokens, KV cache {kv_type}, "
        f"memory {format_size(budget)}{'' if memory else ' (available now)'}"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("QUANT", "WEIGHTS", "KV CACHE", "COMPUTE", "OVERHEAD", "TOTAL", "FITS"):
        table.add_column(column, no_wrap=True, justify="left" if column == "QUANT" else "right")
    for row in result.rows:
        e = row.estimate
        label = row.quant + (" (this file)" if row.current else "")
        fits = "[green]yes[/]" if row.fits(budget) else "[red]no[/]"
        sizes = (e.weights, e.kv_cache, e.compute, e.overhead, e.total)
        table.add_row(label, *(format_size(s) for s in sizes), fits)
    out.print(table)
    best = result.recommended or "none of these fit"
    out.print(f"recommended quantization: {best}")
    out.print(
        f"largest context per sequence that fits as it is ({parallel} parallel): "
        f"{result.max_context or 'none'}"
    )


def _header(name: str) -> ModelHeader:
    if name.startswith(("http://", "https://")):
        return read_remote_gguf_shape(name)
    path = Path(name)
    if path.is_file():
        return read_local_header(path)
    model = Store(get_settings()).resolve(name)
    return read_local_header(model.model_path)
