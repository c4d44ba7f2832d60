"""Store integrity: verify blobs against their digests, repair damaged models, collect garbage.

- :func:`damaged_by_size` is the cheap check (does each blob exist, with the size its
  descriptor says?); ``Store.pull`` runs it so that pulling a damaged model downloads it again.
- :func:`verify` rehashes every blob the chosen models reference, each blob once.
- :func:`repair` deletes damaged blobs and pulls the models again from their source: catalogue,
  registry and Hugging Face names; a model imported from a file or a bundle must be imported
  again.
- :func:`collect_garbage` deletes blobs no manifest references and stale temporary files, under
  the store's lock.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.errors import HearthError, ModelNotFoundError, StoreError
from hearth.store.blobs import PARTIAL_PREFIX, TEMP_PREFIX, BlobStore, Progress, read_chunks
from hearth.store.catalogue import find_entry
from hearth.store.digest import ALGORITHM
from hearth.store.manifest import Descriptor, Manifest, ModelConfig
from hearth.store.names import DEFAULT_HOST, ModelName, parse_name

if TYPE_CHECKING:
    from hearth.store.store import Store

DEFAULT_STALE_AGE = 24 * 3600.0  # seconds


class Problem(StrEnum):
    MISSING = "missing"
    SIZE = "size mismatch"
    DIGEST = "digest mismatch"


@dataclass(frozen=True)
class Damage:
    model: str
    media_type: str
    digest: str
    problem: Problem


@dataclass(frozen=True)
class VerifyReport:
    models: list[str]  # the models checked
    damage: list[Damage]  # one row per damaged blob per model that references it
    bytes_checked: int
    unreadable: list[str] = field(default_factory=list)  # manifests that cannot be parsed

    @property
    def ok(self) -> bool:
        return not self.damage and not self.unreadable


@dataclass(frozen=True)
class RepairReport:
    repaired: list[str]
    unrepairable: dict[str, str]  # model → why it cannot be pulled again
    deleted_blobs: list[str]


@dataclass(frozen=True)
class Garbage:
    path: Path
    size: int
    reason: str  # "unreferenced blob", "stale temporary file", "partial download"


@dataclass(frozen=True)
class GarbageReport:
    removed: list[Garbage]
    dry_run: bool

    @property
    def freed(self) -> int:
        return sum(item.size for item in self.removed)


# Checking ------------------------------------------------------------------------------------


def damaged_by_size(blobs: BlobStore, manifest: Manifest) -> list[tuple[Descriptor, Problem]]:
    """Blobs of ``manifest`` that are missing or have the wrong size (no hashing: cheap)."""
    found = []
    for descriptor in _descriptors(manifest):
        problem = _size_problem(blobs, descriptor)
        if problem is not None:
            found.append((descriptor, problem))
    return found


def verify(
    store: Store, names: Sequence[str] | None = None, progress: Progress | None = None
) -> VerifyReport:
    """Rehash every blob that ``names`` (every model when None) reference, each blob once."""
    manifests, unreadable = _manifests(store, names)
    sizes = _present_sizes(store.blobs, manifests.values())
    total = sum(sizes.values())
    checked: dict[str, Problem | None] = {}
    done = 0
    for descriptor in (d for m in manifests.values() for d in _descriptors(m)):
        if descriptor.digest in checked:
            continue
        problem = _size_problem(store.blobs, descriptor)
        if problem is None:
            problem = _hash_problem(store.blobs, descriptor, done, total, progress)
        done += sizes.get(descriptor.digest, 0)
        checked[descriptor.digest] = problem
    if progress is not None:
        progress(total, total)
    damage = [
        Damage(str(name), d.media_type, d.digest, problem)
        for name, manifest in manifests.items()
        for d in _descriptors(manifest)
        if (problem := checked[d.digest]) is not None
    ]
    return VerifyReport([str(n) for n in manifests], damage, total, unreadable)


# Repairing -----------------------------------------------------------------------------------


def repair(store: Store, report: VerifyReport, progress: Progress | None = None) -> RepairReport:
    """Delete the damaged blobs ``report`` found, then pull the damaged models again.

    A model is pulled again when its name is a catalogue name or names a registry or Hugging
    Face (``pull`` fetches those); other models (imported from a file, a folder or a bundle,
    or made by ``hearth create``) are repaired only if pulling another model restored every
    blob they need (they share it), and reported as unrepairable otherwise.
    """
    damaged_models = list(dict.fromkeys(d.model for d in report.damage))
    deleted = _quarantine(store, {d.digest for d in report.damage if d.problem != Problem.MISSING})
    repaired: list[str] = []
    failed: dict[str, str] = {}
    for name in damaged_models:
        if not _pullable(name):
            continue
        try:
            store.pull(name, progress)
            repaired.append(name)
        except HearthError as error:
            failed[name] = str(error)
    for name in damaged_models:
        if name in repaired or name in failed:
            continue
        if _intact(store, name):
            repaired.append(name)  # another model's pull brought its blobs back
        else:
            source = _source_of(store, name)
            failed[name] = f"source {source} cannot be pulled again; import it again"
    return RepairReport(repaired, failed, deleted)


def _pullable(name: str) -> bool:
    """Catalogue names, and names on a registry or Hugging Face, which ``pull`` fetches again."""
    return find_entry(name) is not None or parse_name(name).host != DEFAULT_HOST


def _quarantine(store: Store, digests: set[str]) -> list[str]:
    """Delete damaged blobs (lock held), so that a pull writes them afresh."""
    with store.locked():
        return [digest for digest in sorted(digests) if store.blobs.delete(digest)]


def _intact(store: Store, name: str) -> bool:
    manifests, _ = _manifests(store, [name])
    return all(not damaged_by_size(store.blobs, m) for m in manifests.values())


def _source_of(store: Store, name: str) -> str:
    """The config's ``source`` (read without the model blob, which may be gone)."""
    manifests, _ = _manifests(store, [name])
    try:
        manifest = next(iter(manifests.values()))
        config = ModelConfig.from_json(store.blobs.read_bytes(manifest.config.digest))
    except (StopIteration, FileNotFoundError, HearthError):
        return "(unknown: the config blob is damaged)"
    return repr(config.source)


# Garbage collection --------------------------------------------------------------------------


def collect_garbage(
    store: Store,
    *,
    stale_after: float = DEFAULT_STALE_AGE,
    all_partials: bool = False,
    dry_run: bool = False,
    now: float | None = None,
) -> GarbageReport:
    """Delete unreferenced blobs and temporary files older than ``stale_after`` seconds.

    Partial downloads (``.partial-*``) younger than that can still be resumed and are kept,
    unless ``all_partials``. Runs under the store's lock; a manifest that cannot be read stops
    it (it might reference anything) with StoreError.
    """
    moment = time.time() if now is None else now
    with store.locked():
        referenced = store._referenced()
        found = list(_unreferenced(store.blobs, referenced))
        found += _stale_temporaries(store, moment - stale_after, all_partials)
        if not dry_run:
            found = [item for item in found if _delete(item.path)]
    return GarbageReport(found, dry_run)


def _unreferenced(blobs: BlobStore, referenced: set[str]) -> Iterator[Garbage]:
    for digest in sorted(blobs.digests() - referenced):
        path = blobs.path(digest)
        yield Garbage(path, _size(path), "unreferenced blob")


def _stale_temporaries(store: Store, cutoff: float, all_partials: bool) -> list[Garbage]:
    found = []
    for path in _temporary_files(store):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        partial = path.name.startswith(PARTIAL_PREFIX)
        if stat.st_mtime < cutoff or (partial and all_partials):
            reason = "partial download" if partial else "stale temporary file"
            found.append(Garbage(path, stat.st_size, reason))
    return found


def _temporary_files(store: Store) -> Iterator[Path]:
    if store.blobs.root.is_dir():
        for path in sorted(store.blobs.root.iterdir()):
            if path.name.startswith((TEMP_PREFIX, PARTIAL_PREFIX)) and path.is_file():
                yield path
    if store.manifests_dir.is_dir():  # an interrupted manifest write
        yield from sorted(p for p in store.manifests_dir.rglob(f"{TEMP_PREFIX}*") if p.is_file())


def _delete(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# Internals -----------------------------------------------------------------------------------


def _descriptors(manifest: Manifest) -> list[Descriptor]:
    return [manifest.config, *manifest.layers]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _size_problem(blobs: BlobStore, descriptor: Descriptor) -> Problem | None:
    try:
        size = blobs.size(descriptor.digest)
    except FileNotFoundError:
        return Problem.MISSING
    return None if size == descriptor.size else Problem.SIZE


def _hash_problem(
    blobs: BlobStore, descriptor: Descriptor, base: int, total: int, progress: Progress | None
) -> Problem | None:
    hasher = hashlib.sha256()
    done = base
    try:
        for chunk in read_chunks(blobs.path(descriptor.digest)):
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    except FileNotFoundError:  # deleted since we looked
        return Problem.MISSING
    actual = f"{ALGORITHM}:{hasher.hexdigest()}"
    return None if actual == descriptor.digest else Problem.DIGEST


def _present_sizes(blobs: BlobStore, manifests: Iterable[Manifest]) -> dict[str, int]:
    sizes = {}
    for manifest in manifests:
        for descriptor in _descriptors(manifest):
            if descriptor.digest not in sizes:
                sizes[descriptor.digest] = _size(blobs.path(descriptor.digest))
    return sizes


def _manifests(
    store: Store, names: Sequence[str] | None
) -> tuple[dict[ModelName, Manifest], list[str]]:
    """The manifests to check, by name; those that cannot be parsed are listed by path."""
    paths = _all_manifest_paths(store) if names is None else _named_paths(store, names)
    manifests: dict[ModelName, Manifest] = {}
    unreadable = []
    for name, path in sorted(paths, key=lambda item: str(item[0])):
        try:
            manifests[name] = Manifest.from_json(path.read_bytes(), path)
        except StoreError as error:
            unreadable.append(str(error))
        except FileNotFoundError:
            continue  # removed since we looked
    return manifests, unreadable


def _named_paths(store: Store, names: Sequence[str]) -> list[tuple[ModelName, Path]]:
    found = []
    for raw in names:
        name = parse_name(raw)
        path = name.manifest_path(store.manifests_dir)
        if not path.is_file():
            raise ModelNotFoundError(raw)
        found.append((name, path))
    return found


def _all_manifest_paths(store: Store) -> list[tuple[ModelName, Path]]:
    return list(store._manifest_paths())
