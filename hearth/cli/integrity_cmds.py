"""Store upkeep commands: ``verify``, ``gc``, ``export``, and the bundle half of ``import``.

Plain functions with typer annotations; ``main.py`` registers them. Tables and answers go to
stdout, progress bars to stderr; a failure raises a HearthError (one line, exit status 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hearth.cli.console import byte_progress, err, out
from hearth.config import get_settings
from hearth.errors import StoreError
from hearth.store import Store
from hearth.store.bundle import export_bundle, import_bundle
from hearth.store.integrity import (
    DEFAULT_STALE_AGE,
    GarbageReport,
    VerifyReport,
    collect_garbage,
    repair,
    verify,
)
from hearth.units import format_size


def verify_models(
    name: Annotated[str | None, typer.Argument(help="Model to check (default: all)")] = None,
    repair_damage: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Delete damaged blobs and pull the models again (catalogue models only)",
        ),
    ] = False,
) -> None:
    """Rehash every blob the models reference; exit status 1 if anything is damaged."""
    store = Store(get_settings())
    with byte_progress("verifying") as progress:
        report = verify(store, [name] if name else None, progress)
    if report.ok:
        out.print(
            f"verified {len(report.models)} models ({format_size(report.bytes_checked)}): no damage"
        )
        return
    _print_damage(report)
    if not repair_damage:
        raise StoreError(f"{_count(report)} damaged; run hearth verify --repair")
    _repair(store, report)


def _print_damage(report: VerifyReport) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("MODEL", "LAYER", "DIGEST", "PROBLEM"):
        table.add_column(column, overflow="fold")
    for damage in report.damage:
        table.add_row(damage.model, damage.media_type, damage.digest, damage.problem.value)
    if report.damage:
        out.print(table)
    for problem in report.unreadable:
        out.print(f"unreadable manifest: {problem}", markup=False)


def _count(report: VerifyReport) -> str:
    blobs = len({d.digest for d in report.damage})
    parts = [f"{blobs} blob{'s' if blobs != 1 else ''}"] if blobs else []
    if report.unreadable:
        parts.append(f"{len(report.unreadable)} manifest(s)")
    return " and ".join(parts)


def _repair(store: Store, report: VerifyReport) -> None:
    with byte_progress("repairing") as progress:
        result = repair(store, report, progress)
    for name in result.repaired:
        out.print(f"repaired {name}")
    for name, why in result.unrepairable.items():
        out.print(f"cannot repair {name}: {why}", markup=False)
    if result.unrepairable or report.unreadable:
        raise StoreError("some damage could not be repaired (see above)")


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be deleted")
    ] = False,
    all_partials: Annotated[
        bool,
        typer.Option("--all-partials", help="Also delete fresh partial downloads (not resumable)"),
    ] = False,
    older_than: Annotated[
        float,
        typer.Option("--older-than", min=0, help="Hours after which temporary files are stale"),
    ] = DEFAULT_STALE_AGE / 3600,
) -> None:
    """Delete blobs no model references and stale temporary files."""
    report = collect_garbage(
        Store(get_settings()),
        stale_after=older_than * 3600,
        all_partials=all_partials,
        dry_run=dry_run,
    )
    _print_garbage(report)


def _print_garbage(report: GarbageReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    for item in report.removed:
        out.print(f"{verb} {item.reason} {item.path.name} ({format_size(item.size)})")
    total = format_size(report.freed)
    if report.dry_run:
        out.print(f"would free {total} ({len(report.removed)} files)")
    else:
        out.print(f"freed {total} ({len(report.removed)} files)")


def export(
    names: Annotated[list[str], typer.Argument(help="Models to put in the bundle")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The bundle to write (an OCI layout tar)")
    ],
) -> None:
    """Write models (with their licenses) to one tar for machines without network access."""
    with byte_progress(f"exporting to {output.name}") as progress:
        bundle = export_bundle(Store(get_settings()), names, output, progress)
    out.print(f"exported {', '.join(bundle.models)} to {bundle.path} ({format_size(bundle.size)})")


def import_bundle_file(path: Path) -> None:
    """``hearth import bundle.tar``: add every model of a bundle, verified, and say its license."""
    store = Store(get_settings())
    with byte_progress(f"importing {path.name}") as progress:
        models = import_bundle(store, path, progress)
    for model in models:
        license_id = model.info.license_id or "unknown"
        out.print(f"imported {model.name} ({format_size(model.size)}, id {model.short_id})")
        out.print(f"  license: {license_id} (read it: hearth show --license {model.name})")
    if not models:
        err.print("the bundle held no models")
