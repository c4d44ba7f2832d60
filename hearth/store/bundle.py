"""Air-gapped bundles: models as one tar in the OCI image-layout format, and back.

A bundle is an uncompressed tar holding ``oci-layout``, ``index.json`` (one manifest descriptor
per model, named by its ``org.opencontainers.image.ref.name`` annotation) and
``blobs/sha256/<hex>`` (the manifests, configs and layers, licenses included). Any OCI tool
that reads image layouts (``oras``, ``skopeo``) can read it.

Export streams each blob from the store into the tar, hashing it on the way (a damaged blob
stops the export), into a temporary file beside the target that is renamed only when complete.
Import reads the tar as a stream, refuses anything but regular files at the layout's paths,
validates every digest before building a path from it, writes every blob through
``BlobStore.write_stream`` with the expected digest, and names the models only once every
blob checked out. It holds the store's lock throughout; on any failure it deletes the blobs it
added, so a corrupt bundle leaves the store as it was.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from hearth.errors import DigestMismatchError, InvalidBundleError, StoreError
from hearth.log import get_logger
from hearth.store.blobs import CHUNK_SIZE, BlobStore, Progress, fsync_dir
from hearth.store.digest import ALGORITHM, digest_bytes, validate_digest
from hearth.store.manifest import Descriptor, Manifest, MediaType
from hearth.store.names import ModelName, parse_name

if TYPE_CHECKING:
    from hearth.store.store import LocalModel, Store

log = get_logger(__name__)

OCI_LAYOUT = "oci-layout"
INDEX = "index.json"
BLOBS_DIR = ("blobs", ALGORITHM)
REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
LAYOUT_VERSION = "1.0.0"
MAX_INDEX_SIZE = 16 * 1024 * 1024  # index.json is read into memory; nothing else is
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class ExportedBundle:
    path: Path
    models: list[str]
    size: int  # bytes of the tar


# Export --------------------------------------------------------------------------------------


def export_bundle(
    store: Store, names: Sequence[str], target: Path, progress: Progress | None = None
) -> ExportedBundle:
    """Write the models ``names`` to ``target`` as an OCI image-layout tar."""
    from hearth.license.report import distribution_gaps  # it reads the store: import late

    models = list({str(m.name): m for m in (store.resolve(n) for n in names)}.values())
    for model in models:
        for gap in distribution_gaps(store, model):
            log.warning("exporting %s: %s", model.name, gap)
    manifests = [(model, _manifest_bytes(store, model)) for model in models]
    descriptors = _unique_blobs(models)
    total = sum(d.size for d in descriptors)
    done = [0]
    with _disk_full("writing the bundle"), _temporary_beside(target) as (temp, raw):
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, OCI_LAYOUT, _dumps({"imageLayoutVersion": LAYOUT_VERSION}))
            _add_bytes(tar, INDEX, _index(manifests))
            for _, data in manifests:
                _add_bytes(tar, _member_name(digest_bytes(data)), data)
            for descriptor in descriptors:
                _add_blob(tar, store.blobs, descriptor, total, done, progress)
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()
        os.replace(temp, target)
    fsync_dir(target.parent)
    if progress is not None:
        progress(total, total)
    return ExportedBundle(target, [str(m.name) for m in models], target.stat().st_size)


def _manifest_bytes(store: Store, model: LocalModel) -> bytes:
    data = model.name.manifest_path(store.manifests_dir).read_bytes()
    if digest_bytes(data) != model.manifest_digest:
        raise StoreError(f"{model.name} changed while it was being exported; try again")
    return data


def _unique_blobs(models: Sequence[LocalModel]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for model in models:
        for descriptor in (model.manifest.config, *model.manifest.layers):
            seen.setdefault(descriptor.digest, descriptor)
    return list(seen.values())


def _index(manifests: Sequence[tuple[LocalModel, bytes]]) -> bytes:
    entries = [
        {
            "mediaType": MediaType.MANIFEST,
            "digest": digest_bytes(data),
            "size": len(data),
            "artifactType": model.manifest.artifact_type,
            "annotations": {REF_NAME: model.name.full},
        }
        for model, data in manifests
    ]
    return _dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries})


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def _add_blob(
    tar: tarfile.TarFile,
    blobs: BlobStore,
    descriptor: Descriptor,
    total: int,
    done: list[int],
    progress: Progress | None,
) -> None:
    """Stream one blob into the tar, hashing it: a damaged blob must not leave the store."""
    path = blobs.path(descriptor.digest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise StoreError(
            f"blob {descriptor.digest} is missing; run hearth verify --repair"
        ) from None
    if size != descriptor.size:
        raise StoreError(
            f"blob {descriptor.digest} has {size} bytes, its manifest says {descriptor.size} "
            "(size mismatch); run hearth verify --repair"
        )
    with path.open("rb") as file:
        reader = _HashingReader(file, total, done, progress)
        tar.addfile(_tar_info(_member_name(descriptor.digest), size), reader)
    if reader.digest() != descriptor.digest:
        raise DigestMismatchError(
            f"blob {descriptor.digest} is damaged (digest mismatch: it hashes to "
            f"{reader.digest()}); run hearth verify --repair"
        )


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0  # the same models always make the same bundle
    return info


def _member_name(digest: str) -> str:
    return "/".join((*BLOBS_DIR, validate_digest(digest).split(":", 1)[1]))


@contextmanager
def _temporary_beside(target: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A temporary file in ``target``'s folder, removed unless the caller renamed it."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    temp = Path(name)
    raw = os.fdopen(fd, "wb")
    try:
        os.fchmod(raw.fileno(), 0o644)
        yield temp, raw
    finally:
        raw.close()
        temp.unlink(missing_ok=True)  # gone already after a successful rename


# Import --------------------------------------------------------------------------------------


def import_bundle(store: Store, path: Path, progress: Progress | None = None) -> list[LocalModel]:
    """Add the models of the bundle at ``path``; a bad bundle leaves the store unchanged."""
    total = path.stat().st_size
    names: list[ModelName] = []
    with path.open("rb") as raw, store.locked():
        added: set[str] = set()
        try:
            with _disk_full("importing the bundle"):
                index = _receive(_CountingReader(raw, total, progress), store.blobs, added)
                plans = _plan(index, store.blobs)
                for name, data in plans:
                    store._replace_manifest(name, data)
                    names.append(name)
        finally:
            # Whatever no manifest references now: the manifests' own blobs, extra blobs, and
            # after a failure everything this import added.
            store._collect(added)
    return [store.resolve(str(name)) for name in names]


def _receive(reader: _CountingReader, blobs: BlobStore, added: set[str]) -> bytes:
    """Write every blob of the tar into ``blobs``, verified; return index.json's bytes."""
    try:
        index = _receive_members(reader, blobs, added)
    except tarfile.TarError as error:  # not a tar, or cut short
        raise InvalidBundleError(f"the bundle is not a complete tar file ({error})") from None
    reader.finish()
    if index is None:
        raise InvalidBundleError(f"the bundle has no {INDEX}: not an OCI image layout")
    return index


def _receive_members(reader: _CountingReader, blobs: BlobStore, added: set[str]) -> bytes | None:
    index = None
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            kind = _classify(member)
            if kind is None:
                continue
            content = tar.extractfile(member)
            if content is None:  # cannot happen for a regular file
                raise InvalidBundleError(f"cannot read member {member.name!r}")
            if kind == INDEX:
                index = _small(content, member, MAX_INDEX_SIZE)
            elif kind != OCI_LAYOUT:
                _receive_blob(blobs, kind, content, member.size, added)
    return index


def _classify(member: tarfile.TarInfo) -> str | None:
    """``oci-layout``, ``index.json``, a blob's digest, or None (a folder); refuse the rest."""
    name = member.name.removeprefix("./")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise InvalidBundleError(f"refused member {member.name!r}: path traversal")
    if member.isdir():
        return None
    if not member.isfile():
        raise InvalidBundleError(
            f"refused member {member.name!r}: a bundle holds only regular files"
        )
    if name in (OCI_LAYOUT, INDEX):
        return name
    if len(parts) == 3 and parts[:2] == BLOBS_DIR:
        return validate_digest(f"{ALGORITHM}:{parts[2]}")
    raise InvalidBundleError(f"refused member {member.name!r}: not part of an OCI image layout")


def _receive_blob(
    blobs: BlobStore, digest: str, content: IO[bytes], size: int, added: set[str]
) -> None:
    existed = blobs.has(digest)
    try:
        blobs.write_stream(_chunks(content), expected=digest, total=size)
    except DigestMismatchError as error:
        raise DigestMismatchError(
            f"blob {digest} in the bundle failed verification: digest mismatch ({error}); "
            "nothing was imported"
        ) from None
    if not existed:
        added.add(digest)


def _plan(index_bytes: bytes, blobs: BlobStore) -> list[tuple[ModelName, bytes]]:
    """Each model's name and manifest bytes, once every blob it needs is checked present."""
    plans: dict[ModelName, bytes] = {}
    for entry in _index_entries(index_bytes):
        name, descriptor = _index_entry(entry)
        if name in plans:
            raise InvalidBundleError(f"{INDEX} names {name} twice")
        data = _stored_manifest(blobs, descriptor, name)
        manifest = Manifest.from_json(data, f"manifest of {name}")
        for needed in (manifest.config, *manifest.layers):
            if not blobs.has(needed.digest) or blobs.size(needed.digest) != needed.size:
                raise InvalidBundleError(f"the bundle lacks blob {needed.digest} that {name} needs")
        plans[name] = data
    if not plans:
        raise InvalidBundleError(f"{INDEX} lists no models")
    return list(plans.items())


def _index_entries(data: bytes) -> list[Any]:
    try:
        index = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidBundleError(f"{INDEX} is not JSON ({error})") from None
    if not isinstance(index, dict) or index.get("schemaVersion") != 2:
        raise InvalidBundleError(f"{INDEX} is not an OCI image index (schemaVersion 2)")
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidBundleError(f"{INDEX} has no manifests list")
    return entries


def _index_entry(entry: Any) -> tuple[ModelName, Descriptor]:
    try:
        descriptor = Descriptor.from_dict(entry)
    except ValueError as error:
        raise InvalidBundleError(f"{INDEX}: invalid manifest descriptor: {error}") from None
    if descriptor.media_type != MediaType.MANIFEST:
        raise InvalidBundleError(f"{INDEX}: {descriptor.digest} is not an OCI image manifest")
    ref = descriptor.annotations.get(REF_NAME)
    if ref is None:
        raise InvalidBundleError(f"{INDEX}: manifest {descriptor.digest} has no {REF_NAME}")
    return parse_name(ref), descriptor


def _stored_manifest(blobs: BlobStore, descriptor: Descriptor, name: ModelName) -> bytes:
    if descriptor.size > MAX_MANIFEST_SIZE:
        raise InvalidBundleError(f"the manifest of {name} is too large ({descriptor.size} bytes)")
    try:
        data = blobs.read_bytes(descriptor.digest)
    except FileNotFoundError:
        raise InvalidBundleError(f"the bundle lacks the manifest of {name}") from None
    if len(data) != descriptor.size:
        raise InvalidBundleError(f"the manifest of {name} has the wrong size")
    return data


def _small(content: IO[bytes], member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise InvalidBundleError(f"{member.name} is too large ({member.size} bytes)")
    return content.read()


def _chunks(content: IO[bytes]) -> Iterator[bytes]:
    while chunk := content.read(CHUNK_SIZE):
        yield chunk


# Shared --------------------------------------------------------------------------------------


@contextmanager
def _disk_full(what: str) -> Iterator[None]:
    """Say "no space left" in one line instead of a traceback."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise StoreError(
            f"no space left on the device while {what}; nothing was changed "
            "(free space, e.g. with hearth gc or hearth rm, and try again)"
        ) from None


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class _HashingReader:
    """A file wrapper that hashes what tarfile reads from it and reports progress."""

    def __init__(
        self, file: IO[bytes], total: int, done: list[int], progress: Progress | None
    ) -> None:
        self._file = file
        self._hasher = hashlib.sha256()
        self._total = total
        self._done = done
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._hasher.update(data)
        self._done[0] += len(data)
        if self._progress is not None:
            self._progress(self._done[0], self._total)
        return data

    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hasher.hexdigest()}"


class _CountingReader(io.RawIOBase):
    """A file wrapper that reports how far tarfile has read, for the progress bar."""

    def __init__(self, file: io.BufferedReader, total: int, progress: Progress | None) -> None:
        super().__init__()
        self._file = file
        self._total = total
        self._done = 0
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._file.readinto(buffer)
        self._done += count
        if self._progress is not None:
            self._progress(min(self._done, self._total), self._total)
        return count

    def finish(self) -> None:
        if self._progress is not None:
            self._progress(self._total, self._total)
