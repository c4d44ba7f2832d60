"""``hearth quantize``: a smaller copy of a stored model, with its size and perplexity before and
after (perplexity on Hearth's sample text, see hearth/store/perplexity.py; --no-eval skips it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hearth.cli.console import count_progress, err, out
from hearth.cli.store_cmds import human_size
from hearth.config import get_settings
from hearth.store import Store
from hearth.store.perplexity import perplexity
from hearth.store.quantize import is_requantize, parse_quant_type


def quantize(
    name: Annotated[str, typer.Argument(help="Model to quantize, e.g. gemma3:270m")],
    to: Annotated[str, typer.Option("--to", help="Quantization: Q4_K_M, Q5_K_M, Q8_0, F16, ...")],
    target: Annotated[
        str | None, typer.Option("--name", "-n", help="Store it as (default NAME-<quant>)")
    ] = None,
    imatrix: Annotated[
        Path | None, typer.Option("--imatrix", help="Importance matrix (llama-imatrix GGUF)")
    ] = None,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip the perplexity check")] = False,
) -> None:
    """Quantize a model with llama.cpp and store the result as a new model."""
    settings = get_settings()
    store = Store(settings)
    quant, _ = parse_quant_type(to)
    source = store.resolve(name)
    if is_requantize(source.info.quantization):  # the store logs it too; say how to avoid it
        err.print("[yellow]hint:[/] quantize from an F16/F32 copy when you can")
    threads = settings.effective_threads
    before = None if no_eval else perplexity(source.model_path, threads=threads)
    started = time.monotonic()
    with count_progress(f"quantizing to {quant}") as progress:
        model = store.quantize(name, quant, target, imatrix, progress)
    seconds = time.monotonic() - started
    after = None if no_eval else perplexity(model.model_path, threads=threads)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("", "MODEL", "QUANT", "FILE SIZE", "PERPLEXITY"):
        table.add_column(column, no_wrap=True)
    for label, item, ppl in (("before", source, before), ("after", model, after)):
        size = item.model_path.stat().st_size
        shown = f"{ppl.perplexity:.3f}" if ppl is not None else "-"
        table.add_row(label, str(item.name), item.info.quantization, human_size(size), shown)
    out.print(table)
    out.print(f"quantized {source.name} to {model.name} in {seconds:.1f} s (id {model.short_id})")
