from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.errors import DigestMismatchError, InvalidDigestError, StoreError
from hearth.store import BlobStore, blob_filename, validate_digest

DATA = b"hello hearth\n" * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def files_in(blobs: BlobStore) -> list[str]:
    return sorted(os.listdir(blobs.root)) if blobs.root.exists() else []


def chunked(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_write_stream_stores_under_digest_name(blobs: BlobStore) -> None:
    blob = blobs.write_stream(chunked(DATA))
    assert (blob.digest, blob.size) == (DIGEST, len(DATA))
    assert blobs.path(DIGEST).read_bytes() == DATA
    assert files_in(blobs) == [blob_filename(DIGEST)]
    assert blobs.has(DIGEST)
    assert blobs.digests() == {DIGEST}


def test_write_with_expected_digest_and_progress(blobs: BlobStore) -> None:
    seen: list[tuple[int, int | None]] = []
    blob = blobs.write_stream(
        chunked(DATA, 5000),
        expected=DIGEST,
        total=len(DATA),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert blob.digest == DIGEST
    assert seen[-1] == (len(DATA), len(DATA))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_mismatch_leaves_nothing(blobs: BlobStore) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatchError, match="expected sha256:0000"):
        blobs.write_stream(chunked(DATA), expected=wrong)
    assert files_in(blobs) == []


def test_size_mismatch_leaves_nothing(blobs: BlobStore) -> None:
    with pytest.raises(StoreError, match=r"received 13000 bytes, expected 5$"):
        blobs.write_stream([DATA], total=5)
    assert files_in(blobs) == []


@pytest.mark.parametrize("error", [OSError("connection reset"), KeyboardInterrupt()])
def test_interrupted_write_leaves_no_blob_and_no_temp(
    blobs: BlobStore, error: BaseException
) -> None:
    def broken() -> Iterator[bytes]:
        yield DATA[:100]
        yield DATA[100:200]
        raise error

    with pytest.raises(type(error)):
        blobs.write_stream(broken(), expected=DIGEST)
    assert files_in(blobs) == []
    assert not blobs.has(DIGEST)


def test_existing_blob_is_returned_without_reading_the_stream(blobs: BlobStore) -> None:
    blobs.write_bytes(DATA)

    def must_not_be_read() -> Iterator[bytes]:
        raise AssertionError("stream was read")
        yield b""

    seen: list[tuple[int, int | None]] = []
    blob = blobs.write_stream(
        must_not_be_read(), expected=DIGEST, progress=lambda d, t: seen.append((d, t))
    )
    assert (blob.digest, blob.size) == (DIGEST, len(DATA))
    assert seen == [(len(DATA), len(DATA))]


def test_rewriting_same_content_without_expected_keeps_one_file(blobs: BlobStore) -> None:
    first = blobs.write_bytes(DATA)
    second = blobs.write_stream(chunked(DATA))
    assert first == second
    assert files_in(blobs) == [blob_filename(DIGEST)]


def test_write_file(blobs: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(DATA)
    assert blobs.write_file(source, expected=DIGEST).size == len(DATA)
    assert blobs.read_bytes(DIGEST) == DATA


def test_read_bytes_detects_corruption(blobs: BlobStore) -> None:
    blobs.write_bytes(DATA)
    blobs.path(DIGEST).write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError, match="corrupt"):
        blobs.read_bytes(DIGEST)


def test_delete(blobs: BlobStore) -> None:
    blobs.write_bytes(DATA)
    assert blobs.delete(DIGEST) is True
    assert blobs.delete(DIGEST) is False
    assert blobs.digests() == set()


def test_digests_ignores_stale_temp_files_and_strangers(blobs: BlobStore) -> None:
    blobs.write_bytes(DATA)
    (blobs.root / ".tmp-abc123").write_bytes(b"half a blob")
    (blobs.root / "notes.txt").write_text("not a blob")
    (blobs.root / ("sha256-" + "A" * 64)).write_text("uppercase is not ours")
    assert blobs.digests() == {DIGEST}


def test_digests_of_missing_root_is_empty(blobs: BlobStore) -> None:
    assert blobs.digests() == set()


BAD_DIGESTS = [
    "sha256:../../etc",
    "sha256:../../../../etc/passwd" + "0" * 40,
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 128,
    "md5:" + "a" * 32,
    "sha256-" + "a" * 64,
    "sha256:" + "g" * 64,
    "sha256:" + "a" * 64 + "\n",
    " sha256:" + "a" * 64,
    "a" * 64,
    "",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_bad_digests_are_rejected_before_any_path_is_built(blobs: BlobStore, digest: str) -> None:
    with pytest.raises(InvalidDigestError):
        validate_digest(digest)
    with pytest.raises(InvalidDigestError):
        blobs.path(digest)
    with pytest.raises(InvalidDigestError):
        blobs.write_bytes(DATA, expected=digest)
    assert files_in(blobs) == []


def test_valid_digest_round_trips() -> None:
    assert validate_digest(DIGEST) == DIGEST
    assert blob_filename(DIGEST) == "sha256-" + DIGEST.split(":")[1]
