"""The model store: names → manifests → blobs, under ``HEARTH_HOME``.

Layout: ``blobs/sha256-<hex>`` and ``manifests/<host>/<namespace>/<name>/<tag>`` (one OCI manifest
per file). Reads take no lock: manifests and blobs are replaced atomically, so a reader sees the
old or the new file, never half of one. Every mutation holds an exclusive ``flock`` on
``HEARTH_HOME/.lock``, so one process's garbage collection cannot race another's write (a blob
written but not yet referenced by a manifest would otherwise look like garbage).
"""

from __future__ import annotations

import builtins
import difflib
import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hearth.config import Settings
from hearth.convert import convert_hf_to_gguf
from hearth.convert.hf_folder import read_card, read_license_file
from hearth.errors import (
    InvalidModelFileError,
    InvalidNameError,
    ModelNotFoundError,
    SourceUnavailableError,
    StoreError,
)
from hearth.log import get_logger
from hearth.store.blobs import Blob, BlobStore, Progress, fsync_dir
from hearth.store.catalogue import CatalogueEntry, PackageFormat, catalogue_names, find_entry
from hearth.store.digest import digest_bytes
from hearth.store.gguf_meta import GGUFInfo, read_gguf_info
from hearth.store.manifest import TITLE_ANNOTATION, Descriptor, Manifest, MediaType, ModelConfig
from hearth.store.names import (
    DEFAULT_HOST,
    ModelName,
    name_from_manifest_path,
    parse_name,
)
from hearth.store.sources.package import (
    package_digest,
    package_model_dir,
    package_source,
    pull_package,
)

log = get_logger(__name__)

TEMP_PREFIX = ".tmp-"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class ModelInfo:
    """What the config blob says about a model (no need to open the GGUF)."""

    architecture: str
    quantization: str
    parameter_count: int
    context_length: int | None
    license_id: str | None
    has_template: bool
    source: str


@dataclass(frozen=True)
class LocalModel:
    name: ModelName
    manifest: Manifest
    manifest_digest: str
    model_path: Path  # the GGUF blob
    info: ModelInfo
    size: int  # bytes, all layers
    modified: datetime  # UTC

    @property
    def short_id(self) -> str:
        return self.manifest_digest.split(":", 1)[1][:12]


class Store:
    def __init__(self, settings: Settings) -> None:
        # Paths only: constructing a Store touches no file.
        self.home = settings.home
        self.manifests_dir = settings.manifests_dir
        self.blobs = BlobStore(settings.blobs_dir)

    # Reading ---------------------------------------------------------------------------------

    def resolve(self, name: str) -> LocalModel:
        """The local model called ``name``; ModelNotFoundError (with close matches) if none."""
        wanted = parse_name(name)
        path = wanted.manifest_path(self.manifests_dir)
        if not path.is_file():
            raise ModelNotFoundError(name, self._suggestions(wanted))
        return self._load(wanted, path)

    def list(self) -> builtins.list[LocalModel]:
        """Every local model, sorted by name; a damaged manifest is logged and left out."""
        models = []
        for name, path in self._manifest_paths():
            try:
                models.append(self._load(name, path))
            except StoreError as error:
                log.warning("skipping %s: %s", name, error)
        return sorted(models, key=lambda model: str(model.name))

    def read_layer(self, model: LocalModel, media_type: str) -> bytes | None:
        """The content of ``model``'s first layer of ``media_type`` (say, the license text)."""
        layer = model.manifest.layer(media_type)
        if layer is None:
            return None
        return self._read_blob(model.name, layer.digest)

    def catalogue_names(self) -> builtins.list[str]:
        return catalogue_names()

    # Getting models --------------------------------------------------------------------------

    def ensure(self, name: str, progress: Progress | None = None) -> LocalModel:
        """The local model, pulled from the catalogue first if it is a catalogue name."""
        try:
            return self.resolve(name)
        except ModelNotFoundError:
            if find_entry(name) is None:
                raise
        return self.pull(name, progress)

    def pull(self, name: str, progress: Progress | None = None) -> LocalModel:
        wanted = parse_name(name)
        entry = find_entry(wanted)
        if entry is None:
            raise self._no_source(name, wanted)
        if entry.format is PackageFormat.SAFETENSORS:
            return self._pull_converted(wanted, entry, progress)
        with self._locked():
            current = self._up_to_date(wanted, package_digest(entry))
            if current is not None:
                if progress is not None:
                    progress(current.size, current.size)
                return current
            pulled = pull_package(entry, self.blobs, progress)
            info = self._check_gguf_blob(pulled.model)
            layers = [_model_layer(pulled.model, pulled.filename)]
            layers += self._text_layers(MediaType.LICENSE, pulled.license_text)
            config = _config(info, license_id=entry.license_id, source=pulled.source)
            return self._commit(wanted, config, layers)

    def import_gguf(self, path: Path, name: str, progress: Progress | None = None) -> LocalModel:
        """Add a local GGUF file as ``name``; a file that is not a valid GGUF changes nothing."""
        wanted = parse_name(name)
        info = read_gguf_info(path)  # before anything is written
        with self._locked():
            blob = self.blobs.write_file(path, progress=progress)
            config = _config(info, license_id=info.license, source=f"file:{path.name}")
            return self._commit(wanted, config, [_model_layer(blob, path.name)])

    def import_hf_dir(self, path: Path, name: str, progress: Progress | None = None) -> LocalModel:
        """Convert a Hugging Face safetensors folder to GGUF and add it as ``name``.

        The license comes from the model card's front matter; the card (and a LICENSE file, if
        any) become layers. A folder that cannot be converted leaves the store unchanged.
        """
        wanted = parse_name(name)
        folder_name = path.resolve().name
        converted, info = self._convert(path, folder_name, progress)
        try:
            with self._locked():
                source = f"dir:{folder_name}"
                return self._commit_converted(wanted, converted, info, path, None, source)
        finally:
            converted.unlink(missing_ok=True)  # gone already unless something failed

    # Changing names --------------------------------------------------------------------------

    def copy(self, src: str, dst: str) -> LocalModel:
        """Give ``src``'s model a second name; both share the manifest bytes, so the same ID."""
        target = parse_name(dst)
        with self._locked():
            source = self.resolve(src)
            data = source.name.manifest_path(self.manifests_dir).read_bytes()
            self._replace_manifest(target, data)
        return self._load(target, target.manifest_path(self.manifests_dir))

    def remove(self, name: str) -> builtins.list[str]:
        """Remove ``name``; delete the blobs no other manifest references, and return them."""
        wanted = parse_name(name)
        path = wanted.manifest_path(self.manifests_dir)
        with self._locked():
            if not path.is_file():
                raise ModelNotFoundError(name, self._suggestions(wanted))
            digests = self._digests_of(path)
            path.unlink()
            fsync_dir(path.parent)
            self._prune_empty_dirs(path.parent)
            return self._collect(digests)

    # Internals: manifests ----------------------------------------------------------------------

    def _load(self, name: ModelName, path: Path) -> LocalModel:
        try:
            data = path.read_bytes()
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        except FileNotFoundError:  # removed by another process since we looked
            raise ModelNotFoundError(str(name)) from None
        manifest = Manifest.from_json(data, path)
        model_layer = manifest.layer(MediaType.MODEL)
        if model_layer is None:
            raise StoreError(f"{path}: manifest has no model layer ({MediaType.MODEL})")
        config = ModelConfig.from_json(self._read_blob(name, manifest.config.digest), path)
        model_path = self.blobs.path(model_layer.digest)
        if not model_path.is_file():
            raise StoreError(f"{name}: model blob {model_layer.digest} is missing; pull it again")
        return LocalModel(
            name=name,
            manifest=manifest,
            manifest_digest=digest_bytes(data),
            model_path=model_path,
            info=_info(config, manifest),
            size=manifest.size,
            modified=modified,
        )

    def _read_blob(self, name: ModelName, digest: str) -> bytes:
        try:
            return self.blobs.read_bytes(digest)
        except FileNotFoundError:
            raise StoreError(f"{name}: blob {digest} is missing; pull it again") from None

    def _manifest_paths(self) -> Iterator[tuple[ModelName, Path]]:
        if not self.manifests_dir.is_dir():
            return
        for path in sorted(self.manifests_dir.glob("*/*/*/*")):
            name = name_from_manifest_path(self.manifests_dir, path) if path.is_file() else None
            if name is not None:
                yield name, path

    def _text_layers(self, media_type: str, text: str | None) -> builtins.list[Descriptor]:
        if not text:
            return []
        blob = self.blobs.write_bytes(text.encode())
        return [Descriptor(media_type, blob.digest, blob.size)]

    def _commit(
        self, name: ModelName, config: ModelConfig, layers: Sequence[Descriptor]
    ) -> LocalModel:
        config_blob = self.blobs.write_bytes(config.to_json())
        config_descriptor = Descriptor(MediaType.CONFIG, config_blob.digest, config_blob.size)
        manifest = Manifest(config=config_descriptor, layers=tuple(layers))
        self._replace_manifest(name, manifest.to_json())
        return self._load(name, name.manifest_path(self.manifests_dir))

    def _replace_manifest(self, name: ModelName, data: bytes) -> None:
        """Write a manifest atomically, then collect what the one it replaced alone referenced."""
        path = name.manifest_path(self.manifests_dir)
        old = self._digests_of(path) if path.is_file() else set()
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
        self._collect(old)

    def _digests_of(self, path: Path) -> set[str]:
        try:
            return Manifest.from_json(path.read_bytes(), path).digests()
        except StoreError as error:
            log.warning("%s; its blobs are left in place", error)
            return set()

    def _referenced(self) -> set[str]:
        """Blobs any manifest references; raises StoreError if a manifest cannot be read."""
        referenced: set[str] = set()
        for _, path in self._manifest_paths():
            referenced |= Manifest.from_json(path.read_bytes(), path).digests()
        return referenced

    def _collect(self, candidates: set[str]) -> builtins.list[str]:
        """Delete the ``candidates`` no manifest references any more; caller holds the lock."""
        if not candidates:
            return []
        try:
            referenced = self._referenced()
        except StoreError as error:
            # A manifest we cannot read might reference anything: delete nothing.
            log.warning("not deleting blobs: %s", error)
            return []
        return [d for d in sorted(candidates - referenced) if self.blobs.delete(d)]

    def _prune_empty_dirs(self, directory: Path) -> None:
        while directory != self.manifests_dir and self.manifests_dir in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty
                return
            directory = directory.parent

    # Internals: sources, names, locking --------------------------------------------------------

    def _up_to_date(self, name: ModelName, model_digest: str) -> LocalModel | None:
        """The local model if it already holds ``model_digest`` (re-reading a GGUF's metadata
        takes seconds for a large vocabulary, so a repeated pull skips it)."""
        path = name.manifest_path(self.manifests_dir)
        try:
            model = self._load(name, path)
        except (ModelNotFoundError, StoreError):
            return None
        layer = model.manifest.layer(MediaType.MODEL)
        return model if layer is not None and layer.digest == model_digest else None

    def _pull_converted(
        self, wanted: ModelName, entry: CatalogueEntry, progress: Progress | None
    ) -> LocalModel:
        """A safetensors package: convert its folder, unless this version is already stored."""
        folder = package_model_dir(entry)
        source = package_source(entry)
        current = self._converted_from(wanted, source)
        if current is not None:
            if progress is not None:
                progress(current.size, current.size)
            return current
        converted, info = self._convert(folder, entry.upstream_name, progress)
        try:
            with self._locked():
                return self._commit_converted(
                    wanted, converted, info, folder, entry.license_id, source
                )
        finally:
            converted.unlink(missing_ok=True)

    def _converted_from(self, name: ModelName, source: str) -> LocalModel | None:
        try:
            model = self._load(name, name.manifest_path(self.manifests_dir))
        except (ModelNotFoundError, StoreError):
            return None
        return model if model.info.source == source else None

    def _convert(
        self, folder: Path, model_name: str, progress: Progress | None
    ) -> tuple[Path, GGUFInfo]:
        """Convert into a temporary file under blobs/ (no lock: other mutations may go on)."""
        target = self.blobs.root / f"{TEMP_PREFIX}convert-{uuid.uuid4().hex}.gguf"
        try:
            convert_hf_to_gguf(folder, target, name=model_name, progress=progress)
            return target, read_gguf_info(target)
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def _commit_converted(
        self,
        name: ModelName,
        converted: Path,
        info: GGUFInfo,
        folder: Path,
        license_id: str | None,
        source: str,
    ) -> LocalModel:
        """Adopt the converted GGUF as the model blob and write the manifest (lock held)."""
        blob = self.blobs.adopt(converted)
        layers = [_model_layer(blob, f"{info.name or name.name}.gguf")]
        layers += self._text_layers(MediaType.LICENSE, read_license_file(folder))
        layers += self._text_layers(MediaType.CARD, read_card(folder))
        config = _config(info, license_id=license_id or info.license, source=source)
        return self._commit(name, config, layers)

    def _check_gguf_blob(self, blob: Blob) -> GGUFInfo:
        try:
            return read_gguf_info(self.blobs.path(blob.digest))
        except InvalidModelFileError:
            self._collect({blob.digest})  # don't keep a blob nothing can use
            raise

    def _no_source(self, name: str, wanted: ModelName) -> Exception:
        if wanted.is_huggingface:
            return SourceUnavailableError(
                f"pulling from Hugging Face ({wanted.full}) arrives with the hub issue; "
                f"for now download the GGUF and run: hearth import FILE --name {name}"
            )
        if wanted.host != DEFAULT_HOST:
            return SourceUnavailableError(
                f"pulling from the registry {wanted.host} ({wanted.full}) "
                "arrives with the hub issue"
            )
        return ModelNotFoundError(name, _close_matches(wanted, catalogue_names()))

    def _suggestions(self, wanted: ModelName) -> builtins.list[str]:
        local = [str(name) for name, _ in self._manifest_paths()]
        return _close_matches(wanted, sorted(set(local) | set(catalogue_names())))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        # "a" creates the file without truncating it; flock locks the open file, not the path.
        with (self.home / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _model_layer(blob: Blob, filename: str) -> Descriptor:
    return Descriptor(MediaType.MODEL, blob.digest, blob.size, {TITLE_ANNOTATION: filename})


def _config(info: GGUFInfo, *, license_id: str | None, source: str) -> ModelConfig:
    return ModelConfig(
        format="gguf",
        architecture=info.architecture,
        parameter_count=info.parameter_count,
        quantization=info.quantization,
        context_length=info.context_length,
        license_id=license_id,
        source=source,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        has_chat_template=info.chat_template is not None,
    )


def _info(config: ModelConfig, manifest: Manifest) -> ModelInfo:
    return ModelInfo(
        architecture=config.architecture,
        quantization=config.quantization,
        parameter_count=config.parameter_count,
        context_length=config.context_length,
        license_id=config.license_id,
        has_template=config.has_chat_template or manifest.layer(MediaType.TEMPLATE) is not None,
        source=config.source,
    )


def _close_matches(wanted: ModelName, known: Sequence[str]) -> builtins.list[str]:
    """Other tags of the same model first, then names that are spelled alike."""
    same_model = [name for name in known if _repository(name) == wanted.repository]
    alike = difflib.get_close_matches(str(wanted), known, n=3, cutoff=0.6)
    return list(dict.fromkeys(same_model + alike))[:3]


def _repository(name: str) -> str | None:
    try:
        return parse_name(name).repository
    except InvalidNameError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
