"""Models from the Hugging Face Hub: ``hf.co/<org>/<repo>[:<quant>]``.

The real ``huggingface_hub`` client does the transfers, so ``HF_TOKEN`` (or ``hf auth login``),
``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the user's Hugging Face cache (``HF_HOME``,
``HF_HUB_CACHE``) work as in every other Hugging Face tool; Hearth reads none of them itself.

- A repository with GGUF files: the tag picks one by its quantization (``Q4_K_M`` matches
  ``model-Q4_K_M.gguf``, any case); ``latest`` means the only one. The file is downloaded into
  the Hugging Face cache, its SHA-256 checked against the Hub's LFS metadata, and hard-linked
  into the blob store: one copy on disk (a copy only when the cache is on another filesystem).
- A repository with ``config.json`` and safetensors weights: the config, tokenizer, weights,
  card and license files are downloaded and converted like ``hearth import DIR``.
- README.md becomes the CARD layer (its front matter's ``license`` the license id), a LICENSE
  file the LICENSE layer.
- With ``HF_HUB_OFFLINE=1``, or when the Hub cannot be reached, the repository's files are
  listed from the cache instead, so a model downloaded once can be pulled again offline.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download, is_offline_mode
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name

from hearth.convert import SUPPORTED_ARCHITECTURES
from hearth.convert.hf_folder import (
    CONFIG_FILE,
    LICENSE_FILES,
    MODEL_CARD,
    PICKLE_SUFFIXES,
    card_license,
    read_card,
    read_json,
    read_license_file,
)
from hearth.errors import (
    ConversionError,
    DigestMismatchError,
    InvalidNameError,
    ModelNotFoundError,
    SourceUnavailableError,
    StoreError,
)
from hearth.store.blobs import Blob, BlobStore, Progress, fsync_dir, read_chunks
from hearth.store.digest import ALGORITHM
from hearth.store.names import DEFAULT_TAG, ModelName

if TYPE_CHECKING:
    from hearth.store.store import LocalModel, Store

GGUF_SUFFIX = ".gguf"
SPLIT_GGUF_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# llama.cpp's quantization names as they appear in file names: Q4_K_M, IQ2_XXS, TQ1_0, F16, ...
QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:I|T)?Q\d(?:_[A-Z0-9]+)*|B?F16|F32|MXFP4)(?![A-Za-z0-9])", re.IGNORECASE
)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
# What a safetensors repository needs for conversion (root files only, plus pooling config).
FOLDER_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", MODEL_CARD, "LICENSE*")
FOLDER_SUBFILES = ("1_Pooling/config.json",)
# os.link fails with these where the filesystem cannot link (other device, no hard links).
NO_LINK_ERRORS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES})
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path inside the repository
    size: int | None
    sha256: str | None  # LFS files only (lowercase hex)


@dataclass(frozen=True)
class RepoListing:
    repo_id: str  # as the Hub spells it (our names are lowercase; the cache is not)
    commit: str
    files: tuple[RemoteFile, ...]

    def file(self, name: str) -> RemoteFile:
        return next(f for f in self.files if f.name == name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]


def pull_huggingface(store: Store, wanted: ModelName, progress: Progress | None) -> LocalModel:
    """Pull ``hf.co/<org>/<repo>:<quant>`` into ``store`` (see the module docstring)."""
    with _hub_errors(wanted):
        listing = list_repo(f"{wanted.namespace}/{wanted.name}")
        ggufs = model_ggufs(listing.names)
        if ggufs:
            return _pull_gguf(store, wanted, listing, choose_gguf(wanted, ggufs), progress)
        return _pull_folder(store, wanted, listing, progress)


# Listing ---------------------------------------------------------------------------------------


def list_repo(repo_id: str) -> RepoListing:
    """The repository's files with sizes and LFS SHA-256s; from the cache when offline."""
    if is_offline_mode():
        return cached_listing(repo_id, reason="HF_HUB_OFFLINE is set")
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except (httpx2.ConnectError, httpx2.TimeoutException) as error:
        return cached_listing(repo_id, reason=f"{constants.ENDPOINT} cannot be reached ({error})")
    if info.sha is None:
        raise SourceUnavailableError(
            f"{constants.ENDPOINT} did not say which commit {repo_id} is at"
        )
    files = tuple(
        RemoteFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None)
        for s in info.siblings or []
    )
    return RepoListing(info.id, info.sha, files)


def cached_listing(repo_id: str, *, reason: str) -> RepoListing:
    """What the Hugging Face cache holds of ``repo_id``'s ``main`` (a blob's name is its etag,
    the SHA-256 for LFS files)."""
    storage = _cache_folder(repo_id)
    snapshot = _cached_snapshot(storage) if storage else None
    if storage is None or snapshot is None:
        raise SourceUnavailableError(
            f"{reason}, and hf.co/{repo_id} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); pull it once while online"
        )
    files = []
    for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        etag = Path(os.path.realpath(path)).name
        sha256 = etag if SHA256_RE.fullmatch(etag) else None
        files.append(RemoteFile(path.relative_to(snapshot).as_posix(), path.stat().st_size, sha256))
    return RepoListing(_repo_id_of(storage), snapshot.name, tuple(files))


def _cached_snapshot(storage: Path) -> Path | None:
    """The snapshot ``refs/main`` names, else the newest one (a download pinned to a commit,
    as Hearth's are, writes no ref)."""
    ref = storage / "refs" / "main"
    if ref.is_file():
        snapshot = storage / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    snapshots = [p for p in (storage / "snapshots").glob("*") if p.is_dir()]
    return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)


def _cache_folder(repo_id: str) -> Path | None:
    """``models--<org>--<repo>`` in the cache, matched without case (our names are lowercase)."""
    root = Path(constants.HF_HUB_CACHE)
    wanted = repo_folder_name(repo_id=repo_id, repo_type="model").lower()
    if not root.is_dir():
        return None
    return next((p for p in root.iterdir() if p.name.lower() == wanted and p.is_dir()), None)


def _repo_id_of(storage: Path) -> str:
    return storage.name.removeprefix("models--").replace("--", "/", 1)


# Choosing the GGUF file ------------------------------------------------------------------------


def model_ggufs(names: Sequence[str]) -> list[str]:
    """The repository's GGUF model files (multimodal projectors are not models on their own)."""
    return sorted(
        n
        for n in names
        if n.lower().endswith(GGUF_SUFFIX) and not Path(n).name.lower().startswith("mmproj")
    )


def quant_of(filename: str) -> str | None:
    """The quantization a GGUF file name states (``model-Q4_K_M.gguf`` → ``Q4_K_M``)."""
    stem = SPLIT_GGUF_RE.sub(GGUF_SUFFIX, Path(filename).name)[: -len(GGUF_SUFFIX)]
    found = QUANT_RE.findall(stem)
    return found[-1].upper() if found else None


def choose_gguf(wanted: ModelName, ggufs: Sequence[str]) -> str:
    """The one GGUF file ``wanted.tag`` names; errors list the choices."""
    if wanted.tag == DEFAULT_TAG and len(_groups(ggufs)) == 1:
        return _single(wanted, ggufs)
    if wanted.tag == DEFAULT_TAG:
        raise SourceUnavailableError(
            f"{wanted.repository} has {len(_groups(ggufs))} GGUF files; name one: "
            + ", ".join(_choices(wanted, ggufs))
        )
    tag = wanted.tag.upper()
    exact = [n for n in ggufs if quant_of(n) == tag]
    token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(tag)}(?![A-Za-z0-9])", re.IGNORECASE)
    matches = exact or [n for n in ggufs if token.search(Path(n).name)]
    if not matches:
        raise ModelNotFoundError(wanted.full, _choices(wanted, ggufs))
    if len(_groups(matches)) > 1:
        raise SourceUnavailableError(
            f"{wanted.full} matches {len(_groups(matches))} GGUF files: "
            + ", ".join(sorted(_groups(matches)))
        )
    return _single(wanted, matches)


def _groups(ggufs: Sequence[str]) -> set[str]:
    """File names with the split suffix removed: the parts of one split model are one group."""
    return {SPLIT_GGUF_RE.sub(GGUF_SUFFIX, n) for n in ggufs}


def _single(wanted: ModelName, files: Sequence[str]) -> str:
    if len(files) > 1 or SPLIT_GGUF_RE.search(files[0]):
        raise SourceUnavailableError(
            f"{wanted.full} is a GGUF split into {len(files)} files ({files[0]}, ...); Hearth "
            "cannot pull split GGUFs yet: download them, merge them with "
            "llama-gguf-split --merge, and run hearth import FILE --name NAME"
        )
    return files[0]


def _choices(wanted: ModelName, ggufs: Sequence[str]) -> list[str]:
    labels = {quant_of(n) or Path(n).name for n in ggufs}
    return [f"{wanted.repository}:{label}" for label in sorted(labels)]


# Pulling ---------------------------------------------------------------------------------------


def _pull_gguf(
    store: Store,
    wanted: ModelName,
    listing: RepoListing,
    filename: str,
    progress: Progress | None,
) -> LocalModel:
    remote = listing.file(filename)
    expected = f"{ALGORITHM}:{remote.sha256}" if remote.sha256 else None
    current = None
    if expected is not None:
        with store.locked():  # _up_to_date may drop damaged blobs
            current = store._up_to_date(wanted, expected)
    if current is not None:
        if progress is not None:
            progress(current.size, current.size)
        return current
    snapshot = _download(listing, _side_files(listing), None)
    path = _download(listing, [filename], progress) / filename
    return store._add_gguf(
        wanted,
        lambda blobs: link_blob(blobs, path, expected, f"{filename} from {wanted.repository}"),
        Path(filename).name,
        license_text=read_license_file(snapshot),
        card=read_card(snapshot) or None,
        license_id=card_license(snapshot),
        source=f"hf:{listing.repo_id}@{listing.commit}/{filename}",
    )


def _pull_folder(
    store: Store, wanted: ModelName, listing: RepoListing, progress: Progress | None
) -> LocalModel:
    """A safetensors repository: download what the converter reads, then convert it."""
    _check_folder(wanted, listing)
    source = f"hf:{listing.repo_id}@{listing.commit}"
    current = store._converted_from(wanted, source)
    if current is not None:
        if progress is not None:
            progress(current.size, current.size)
        return current
    snapshot = _download(listing, [CONFIG_FILE], None)
    _check_architecture(wanted, snapshot)
    _download(listing, [n for n in listing.names if _folder_file(n)], progress)
    model_name = listing.repo_id.split("/")[-1]
    return store._add_converted_folder(wanted, snapshot, model_name, source, progress)


def _check_folder(wanted: ModelName, listing: RepoListing) -> None:
    names = listing.names
    if CONFIG_FILE not in names:
        raise SourceUnavailableError(
            f"{wanted.repository} has no GGUF file and no {CONFIG_FILE}: Hearth pulls GGUF "
            "files and Hugging Face safetensors models"
        )
    if wanted.tag != DEFAULT_TAG:
        raise SourceUnavailableError(
            f"{wanted.repository} has no GGUF files, so no {wanted.tag} to choose: pull "
            f"{wanted.repository} to convert its safetensors weights, then quantize the result"
        )
    if not any(n.endswith(".safetensors") and "/" not in n for n in names):
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        reason = (
            f"holds its weights only as pickle files ({', '.join(pickles)}); Hearth never "
            "loads pickle files because loading one can run arbitrary code. Ask the publisher "
            "for safetensors weights"
            if pickles
            else "has no safetensors weights"
        )
        raise ConversionError(f"{wanted.repository} {reason}")


def _check_architecture(wanted: ModelName, snapshot: Path) -> None:
    """Refuse before downloading the weights what the converter would refuse after."""
    config = read_json(snapshot / CONFIG_FILE)
    names = config.get("architectures")
    architecture = names[0] if isinstance(names, list) and names else config.get("model_type")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(
            f"{wanted.repository}: architecture {architecture} is not supported by Hearth's "
            f"converter (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )


def _folder_file(name: str) -> bool:
    if name in FOLDER_SUBFILES:
        return True
    return "/" not in name and any(fnmatch.fnmatch(name, p) for p in FOLDER_PATTERNS)


def _side_files(listing: RepoListing) -> list[str]:
    return [n for n in listing.names if n in (MODEL_CARD, *LICENSE_FILES)]


def _download(listing: RepoListing, names: Sequence[str], progress: Progress | None) -> Path:
    """Download ``names`` at the listed commit into the Hugging Face cache; its snapshot folder.

    Progress counts bytes over all the files (files already cached count as done at once).
    """
    total = sum(listing.file(n).size or 0 for n in names) or None
    done = 0
    for name in names:

        def report(file_done: int, offset: int = done) -> None:
            if progress is not None:
                progress(offset + file_done, total)

        local = hf_hub_download(
            listing.repo_id,
            name,
            revision=listing.commit,
            tqdm_class=cast(Any, byte_counter_class(report)),
        )
        done += Path(local).stat().st_size
        if progress is not None:
            progress(done, total)
    return _snapshot_path(listing)


def _snapshot_path(listing: RepoListing) -> Path:
    storage = repo_folder_name(repo_id=listing.repo_id, repo_type="model")
    return Path(constants.HF_HUB_CACHE) / storage / "snapshots" / listing.commit


class _ByteCounter:
    """Stands in for huggingface_hub's tqdm bars (plain HTTP and Xet downloads alike): prints
    nothing, reports bytes written to a callback. Network bytes (``update_transfer``, which Xet
    reports apart, smaller after deduplication) are ignored."""

    report: Callable[[int], None]

    def __init__(self, *, initial: int = 0, total: int | None = None, **_: object) -> None:
        self.n = initial
        self.total = total

    def update(self, n: int = 1) -> None:
        self.n = max(0, self.n + n)  # n < 0 when a server ignored a resume's Range
        self.report(self.n)

    def update_transfer(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_transfer_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _ByteCounter:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def byte_counter_class(report: Callable[[int], None]) -> type[_ByteCounter]:
    return type("ByteCounter", (_ByteCounter,), {"report": staticmethod(report)})


# Into the blob store ---------------------------------------------------------------------------


def link_blob(blobs: BlobStore, path: Path, expected: str | None, label: str) -> Blob:
    """Make the cached file ``path`` a blob without a second copy: hard-link it, hash the link,
    and rename it onto its digest name. Copies where the filesystem cannot link.

    A file that does not hash to ``expected`` is removed from the Hugging Face cache too (it
    would otherwise be reused by every later pull) and raises DigestMismatchError.
    """
    if expected is not None and blobs.has(expected):
        return Blob(expected, blobs.size(expected))
    blobs.root.mkdir(parents=True, exist_ok=True)
    temp = blobs.root / f"{TEMP_PREFIX}link-{uuid.uuid4().hex}"
    try:
        os.link(os.path.realpath(path), temp)
    except OSError as error:
        if error.errno not in NO_LINK_ERRORS:
            raise
        return _copy_blob(blobs, path, expected, label)
    try:
        blob = _hashed(temp)
        if expected is not None and blob.digest != expected:
            _forget_cached(path)
            raise _mismatch(label, expected, blob.digest)
        if blobs.has(blob.digest):
            temp.unlink()
        else:
            os.replace(temp, blobs.path(blob.digest))
            fsync_dir(blobs.root)
    finally:
        temp.unlink(missing_ok=True)
    return blob


def _copy_blob(blobs: BlobStore, path: Path, expected: str | None, label: str) -> Blob:
    try:
        return blobs.write_file(path, expected=expected)
    except DigestMismatchError:
        actual = _hashed(path).digest
        _forget_cached(path)
        raise _mismatch(label, expected or "", actual) from None


def _hashed(path: Path) -> Blob:
    hasher = hashlib.sha256()
    size = 0
    for chunk in read_chunks(path):
        hasher.update(chunk)
        size += len(chunk)
    return Blob(f"{ALGORITHM}:{hasher.hexdigest()}", size)


def _mismatch(label: str, expected: str, actual: str) -> DigestMismatchError:
    return DigestMismatchError(
        f"digest mismatch for {label}: the Hub lists {expected}, the download hashes to "
        f"{actual}; it was removed from the Hugging Face cache, pull again"
    )


def _forget_cached(path: Path) -> None:
    """Remove a corrupt download from the cache: the snapshot's link, the links it goes
    through (a Xet shared blob is one more), and the file."""
    while path.is_symlink():
        target = path.parent / os.readlink(path)
        path.unlink()
        path = target
    path.unlink(missing_ok=True)


# Errors ----------------------------------------------------------------------------------------


@contextmanager
def _hub_errors(wanted: ModelName) -> Iterator[None]:
    """huggingface_hub's exceptions as Hearth's, each saying what to do."""
    repo = wanted.repository
    try:
        yield
    except HFValidationError as error:
        raise InvalidNameError(f"{repo} is not a valid Hugging Face repository: {error}") from None
    except GatedRepoError:
        raise SourceUnavailableError(
            f"{repo} is gated: accept its terms on the Hub, then set HF_TOKEN to an access "
            "token of that account (or run hf auth login)"
        ) from None
    except RepositoryNotFoundError:
        raise SourceUnavailableError(
            f"{repo} was not found on {constants.ENDPOINT} (a private or gated repository "
            "needs HF_TOKEN set to an access token that may read it)"
        ) from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as error:
        raise SourceUnavailableError(
            f"{repo}: a file is neither in the Hugging Face cache nor reachable ({error})"
        ) from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "an error"
        hint = " (check HF_TOKEN)" if status in (401, 403) else ""
        raise SourceUnavailableError(
            f"{constants.ENDPOINT} answered {status} for {repo}{hint}: {error}"
        ) from None
    except httpx2.HTTPError as error:
        raise SourceUnavailableError(f"cannot download {repo}: {error}") from None
    except OSError as error:
        if error.errno is not None:  # a local file error, not huggingface_hub's size check
            raise
        raise StoreError(f"downloading {repo} failed: {error}") from None
