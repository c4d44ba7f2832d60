"""Content-addressed blobs: ``<root>/sha256-<hex>``, written so that a crash never leaves a half
blob under a digest name.

A write goes to ``<root>/.tmp-*`` while it is hashed, is fsynced and verified, and only then is
renamed onto its digest name (and the directory fsynced, so the rename survives a power cut).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hearth.errors import DigestMismatchError, IncompleteDownloadError, StoreError
from hearth.store.digest import ALGORITHM, blob_filename, digest_from_filename, validate_digest

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None when unknown)."""

CHUNK_SIZE = 1024 * 1024
TEMP_PREFIX = ".tmp-"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def read_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The bytes of ``path`` in chunks, so large files never sit in memory whole."""
    with path.open("rb") as file:
        while chunk := file.read(chunk_size):
            yield chunk


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / blob_filename(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def digests(self) -> set[str]:
        """Every complete blob; temporary files of unfinished writes are not blobs."""
        if not self.root.is_dir():
            return set()
        found = (digest_from_filename(entry.name) for entry in self.root.iterdir())
        return {digest for digest in found if digest is not None}

    def read_bytes(self, digest: str) -> bytes:
        """A (small) blob's content, checked against its digest."""
        data = self.path(digest).read_bytes()
        actual = f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"
        if actual != digest:
            raise DigestMismatchError(f"blob {digest} is corrupt: its content hashes to {actual}")
        return data

    def delete(self, digest: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.root)
        return True

    def write_bytes(self, data: bytes, *, expected: str | None = None) -> Blob:
        return self.write_stream([data], expected=expected, total=len(data))

    def write_file(
        self, path: Path, *, expected: str | None = None, progress: Progress | None = None
    ) -> Blob:
        total = path.stat().st_size
        return self.write_stream(
            read_chunks(path), expected=expected, total=total, progress=progress
        )

    def write_stream(
        self,
        chunks: Iterable[bytes],
        *,
        expected: str | None = None,
        total: int | None = None,
        progress: Progress | None = None,
    ) -> Blob:
        """Store the concatenated ``chunks`` as one blob and return it.

        With ``expected``, content that hashes to anything else raises DigestMismatchError, and a
        blob that is already present is returned without reading ``chunks`` at all.
        """
        if expected is not None:
            validate_digest(expected)
            if self.has(expected):
                return self._existing(expected, progress)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
        temp = Path(temp_name)
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; blobs are readable like any model file
            with os.fdopen(fd, "wb") as file:
                blob = _copy_hashing(chunks, file, total, progress)
            _check(blob, expected, total)
            if self.has(blob.digest):
                temp.unlink()  # same content already stored; keep the existing file
            else:
                os.replace(temp, self.path(blob.digest))
                fsync_dir(self.root)
        except BaseException:
            # Also on KeyboardInterrupt: never leave a temp file behind us.
            temp.unlink(missing_ok=True)
            raise
        return blob

    def adopt(self, path: Path) -> Blob:
        """Make the finished, fsynced file ``path`` a blob by renaming it (no copy).

        ``path`` must be a temporary file in this store's root (so the rename is atomic); it is
        consumed either way: renamed onto its digest name, or removed if that blob exists.
        """
        if path.parent != self.root or not path.name.startswith(TEMP_PREFIX):
            raise StoreError(f"{path} is not a temporary file of the blob store {self.root}")
        hasher = hashlib.sha256()
        size = 0
        for chunk in read_chunks(path):
            hasher.update(chunk)
            size += len(chunk)
        blob = Blob(f"{ALGORITHM}:{hasher.hexdigest()}", size)
        if self.has(blob.digest):
            path.unlink()
        else:
            os.replace(path, self.path(blob.digest))
            fsync_dir(self.root)
        return blob

    def partial_path(self, digest: str) -> Path:
        """Where a resumable download of ``digest`` collects its bytes (not a blob name)."""
        return self.root / f"{PARTIAL_PREFIX}{blob_filename(digest)}"

    def download(
        self,
        digest: str,
        size: int,
        open_range: Callable[[int], Iterable[bytes]],
        progress: Progress | None = None,
    ) -> Blob:
        """Store ``digest`` from ``open_range(offset)``, which yields the content from byte
        ``offset`` on (an HTTP Range request), appending to what an earlier try left.

        Bytes go to ``.partial-sha256-<hex>``; a transfer that stops early raises
        IncompleteDownloadError and keeps that file, so calling again resumes it. When ``size``
        bytes are there the whole file is hashed: a mismatch removes it and raises
        DigestMismatchError, a match is fsynced and renamed onto the digest name.
        """
        validate_digest(digest)
        if self.has(digest):
            return self._existing(digest, progress)
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.partial_path(digest)
        done = partial.stat().st_size if partial.is_file() else 0
        if done > size:  # not from this blob: start over
            partial.unlink()
            done = 0
        # Hashed as the bytes arrive (what an earlier try left is read once, first), so the
        # finished file is not read a second time.
        hasher = _hash_of(partial) if done else hashlib.sha256()
        if done < size:
            done = _append(partial, open_range(done), done, size, hasher, progress)
        if done < size:
            raise IncompleteDownloadError(
                f"download of {digest} stopped at {done} of {size} bytes; pull again to resume"
            )
        return self._finish_partial(partial, digest, size, f"{ALGORITHM}:{hasher.hexdigest()}")

    def _finish_partial(self, partial: Path, digest: str, size: int, actual: str) -> Blob:
        if actual != digest:
            partial.unlink(missing_ok=True)
            raise DigestMismatchError(
                f"digest mismatch: the {size} bytes received for {digest} hash to {actual}"
            )
        os.chmod(partial, 0o644)
        os.replace(partial, self.path(digest))
        fsync_dir(self.root)
        return Blob(digest, size)

    def _existing(self, digest: str, progress: Progress | None) -> Blob:
        size = self.size(digest)
        if progress is not None:
            progress(size, size)
        return Blob(digest, size)


def _copy_hashing(
    chunks: Iterable[bytes], file: BinaryIO, total: int | None, progress: Progress | None
) -> Blob:
    hasher = hashlib.sha256()
    done = 0
    for chunk in chunks:
        hasher.update(chunk)
        file.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    file.flush()
    os.fsync(file.fileno())
    return Blob(f"{ALGORITHM}:{hasher.hexdigest()}", done)


def _append(
    partial: Path,
    chunks: Iterable[bytes],
    done: int,
    size: int,
    hasher: hashlib._Hash,
    progress: Progress | None,
) -> int:
    """Append ``chunks`` to ``partial`` (fsynced as far as it got), feeding ``hasher``; return
    the file's new size."""
    with partial.open("ab") as file:
        try:
            for chunk in chunks:
                if done + len(chunk) > size:
                    file.close()
                    partial.unlink()
                    raise DigestMismatchError(
                        f"digest mismatch: received more than the {size} bytes announced"
                    )
                file.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, size)
        finally:
            if not file.closed:
                file.flush()
                os.fsync(file.fileno())
    return done


def _hash_of(path: Path) -> hashlib._Hash:
    hasher = hashlib.sha256()
    for chunk in read_chunks(path):
        hasher.update(chunk)
    return hasher


def _check(blob: Blob, expected: str | None, total: int | None) -> None:
    if expected is not None and blob.digest != expected:
        raise DigestMismatchError(f"content hashes to {blob.digest}, expected {expected}")
    if total is not None and blob.size != total:
        raise StoreError(f"received {blob.size} bytes, expected {total}")
