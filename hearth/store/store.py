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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from hearth.config import Settings
from hearth.convert import convert_hf_to_gguf
from hearth.convert.hf_folder import read_card, read_license_file
from hearth.errors import (
    InvalidModelFileError,
    InvalidNameError,
    ModelNotFoundError,
    StoreError,
)
from hearth.log import get_logger
from hearth.store.blobs import Blob, BlobStore, Progress, fsync_dir
from hearth.store.catalogue import CatalogueEntry, PackageFormat, catalogue_names, find_entry
from hearth.store.digest import digest_bytes, digest_from_filename
from hearth.store.gguf_meta import GGUFInfo, read_gguf_info
from hearth.store.gguf_shape import read_gguf_shape
from hearth.store.integrity import Problem, damaged_by_size
from hearth.store.manifest import TITLE_ANNOTATION, Descriptor, Manifest, MediaType, ModelConfig
from hearth.store.names import (
    DEFAULT_HOST,
    HF_HOST,
    ModelName,
    name_from_manifest_path,
    parse_name,
)
from hearth.store.profile import ModelProfile, parse_messages, parse_parameters
from hearth.store.quantize import (
    QuantizeOptions,
    default_target_name,
    is_requantize,
    parse_quant_type,
    quantize_gguf,
)
from hearth.store.sources.huggingface import pull_huggingface
from hearth.store.sources.package import (
    package_digest,
    package_model_dir,
    package_source,
    pull_package,
)
from hearth.store.sources.registry import PushResult, pull_from_registry, push_to_registry

log = get_logger(__name__)

TEMP_PREFIX = ".tmp-"
LOCK_FILE = ".lock"
# The files of a Hugging Face folder an import keeps (config, tokenizer, weights): no pickles.
HF_SOURCE_SUFFIXES = frozenset({".json", ".safetensors", ".model", ".txt", ".jinja"})


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
        self.settings = settings  # registry credentials
        self._profiles: dict[str, ModelProfile] = {}  # by manifest digest
        self.threads = settings.effective_threads  # llama.cpp threads for quantizing

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

    def pull(
        self, name: str, progress: Progress | None = None, *, insecure: bool = False
    ) -> LocalModel:
        wanted = parse_name(name)
        if wanted.host not in (DEFAULT_HOST, HF_HOST):
            return pull_from_registry(self, wanted, progress, insecure=insecure)
        if wanted.is_huggingface:
            return pull_huggingface(self, wanted, progress)
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

    def import_hf_dir(
        self,
        path: Path,
        name: str,
        progress: Progress | None = None,
        *,
        keep_source: bool = True,
        source_progress: Progress | None = None,
    ) -> LocalModel:
        """Convert a Hugging Face safetensors folder to GGUF and add it as ``name``.

        The license comes from the model card's front matter; the card (and a LICENSE file, if
        any) become layers. With ``keep_source`` the folder's own files (config, tokenizer,
        safetensors) are kept too, as ``HF_FILE`` layers, so fine-tuning can load them as they
        are. A folder that cannot be converted leaves the store unchanged.
        """
        wanted = parse_name(name)
        folder_name = path.resolve().name
        converted, info = self._convert(path, folder_name, progress)
        try:
            with self._locked():
                source = f"dir:{folder_name}"
                kept = self._hf_source_layers(path, source_progress) if keep_source else []
                return self._commit_converted(wanted, converted, info, path, None, source, kept)
        finally:
            converted.unlink(missing_ok=True)  # gone already unless something failed

    def push(
        self,
        name: str,
        target: str,
        progress: Progress | None = None,
        *,
        insecure: bool = False,
        chunk_size: int | None = None,
    ) -> PushResult:
        """Push the local model ``name`` to the registry named by ``target`` (host/ns/name:tag)."""
        destination = parse_name(target)
        if destination.host in (DEFAULT_HOST, HF_HOST):
            raise InvalidNameError(
                f"push target {target!r} must start with a registry host (host[:port]/ns/name)"
            )
        from hearth.license.report import distribution_gaps  # it reads the store: import late

        model = self.resolve(name)
        for gap in distribution_gaps(self, model):
            log.warning("pushing %s: %s", model.name, gap)
        data = model.name.manifest_path(self.manifests_dir).read_bytes()
        return push_to_registry(
            self, model.name, data, destination, progress, insecure=insecure, chunk_size=chunk_size
        )

    def commit_manifest(
        self,
        name: ModelName,
        data: bytes,
        fetch_missing: Callable[[builtins.list[Descriptor]], None],
    ) -> LocalModel:
        """Store manifest bytes fetched from elsewhere (a registry) under ``name``.

        Under the lock, blobs collected since they were fetched are fetched again first, so the
        manifest never points at a missing blob.
        """
        manifest = Manifest.from_json(data, str(name))
        with self._locked():
            blobs = [manifest.config, *manifest.layers]
            missing = [blob for blob in blobs if not self.blobs.has(blob.digest)]
            if missing:
                fetch_missing(missing)
            self._replace_manifest(name, data)
        return self._load(name, name.manifest_path(self.manifests_dir))

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

    # Profiles and derived models (hearth create) ----------------------------------------------

    def profile(self, model: LocalModel) -> ModelProfile:
        """The system prompt, template, parameters, messages and adapters ``model`` carries."""
        cached = self._profiles.get(model.manifest_digest)
        if cached is None:
            cached = self._read_profile(model)
            self._profiles[model.manifest_digest] = cached  # manifests never change in place
        return cached

    def licenses(self, model: LocalModel) -> builtins.list[str]:
        """Every license text ``model`` carries (a derived model keeps its base's)."""
        return [
            self._read_blob(model.name, layer.digest).decode("utf-8", errors="replace")
            for layer in model.manifest.layers
            if layer.media_type == MediaType.LICENSE
        ]

    def config_of(self, model: LocalModel) -> ModelConfig:
        digest = model.manifest.config.digest
        return ModelConfig.from_json(self._read_blob(model.name, digest), str(model.name))

    def add_text_layer(self, media_type: str, text: str | bytes) -> Descriptor:
        """Write a small layer's content as a blob (call inside :meth:`locked`)."""
        data = text.encode() if isinstance(text, str) else text
        blob = self.blobs.write_bytes(data)
        return Descriptor(media_type, blob.digest, blob.size)

    def add_file_layer(
        self, media_type: str, path: Path, progress: Progress | None = None
    ) -> Descriptor:
        """Write a file as a layer's blob (call inside :meth:`locked`); a file that is one of
        the store's blobs already is referenced, not copied."""
        stored = digest_from_filename(path.name) if path.parent == self.blobs.root else None
        if stored is not None and self.blobs.has(stored):
            return Descriptor(media_type, stored, self.blobs.size(stored))
        blob = self.blobs.write_file(path, progress=progress)
        return Descriptor(media_type, blob.digest, blob.size, {TITLE_ANNOTATION: path.name})

    def commit(self, name: str, config: ModelConfig, layers: Sequence[Descriptor]) -> LocalModel:
        """Name a new manifest over blobs already stored (call inside :meth:`locked`)."""
        missing = [layer.digest for layer in layers if not self.blobs.has(layer.digest)]
        if missing:
            raise StoreError(f"cannot create {name}: blob {missing[0]} is not in the store")
        return self._commit(parse_name(name), config, layers)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock, so garbage collection cannot take blobs written but not yet
        named. Not re-entrant: call no other mutating Store method inside."""
        with self._locked():
            yield

    def _read_profile(self, model: LocalModel) -> ModelProfile:
        def text(media_type: str) -> str | None:
            data = self.read_layer(model, media_type)
            return None if data is None else data.decode("utf-8", errors="replace")

        origin = str(model.name)
        params = self.read_layer(model, MediaType.PARAMS)
        messages = self.read_layer(model, MediaType.MESSAGES)
        adapters = [
            self.blobs.path(layer.digest)
            for layer in model.manifest.layers
            if layer.media_type == MediaType.ADAPTER
        ]
        return ModelProfile(
            system=text(MediaType.SYSTEM),
            template=text(MediaType.TEMPLATE),
            parameters={} if params is None else parse_parameters(params, origin),
            messages=() if messages is None else parse_messages(messages, origin),
            adapters=tuple(adapters),
        )

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
        """The local model if it already holds ``model_digest`` with every blob at its size
        (re-reading a GGUF's metadata takes seconds for a large vocabulary, so a repeated pull
        skips it). A missing or damaged blob means pull again; caller holds the lock."""
        path = name.manifest_path(self.manifests_dir)
        if self._drop_damaged_blobs(path):
            return None
        try:
            model = self._load(name, path)
        except (ModelNotFoundError, StoreError):
            return None
        layer = model.manifest.layer(MediaType.MODEL)
        return model if layer is not None and layer.digest == model_digest else None

    def _drop_damaged_blobs(self, path: Path) -> bool:
        """Delete the blobs of manifest ``path`` that have the wrong size, so a pull writes them
        afresh (a blob already stored is never rewritten); True if any was missing or damaged.
        Cheap: sizes only (``hearth verify`` rehashes). Caller holds the lock."""
        try:
            manifest = Manifest.from_json(path.read_bytes(), path)
        except (FileNotFoundError, StoreError):
            return False
        damaged = damaged_by_size(self.blobs, manifest)
        for descriptor, problem in damaged:
            if problem is Problem.SIZE:
                log.warning("%s: blob %s has the wrong size; deleting it", path, descriptor.digest)
                self.blobs.delete(descriptor.digest)
        return bool(damaged)

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
        with self._locked():
            if self._drop_damaged_blobs(name.manifest_path(self.manifests_dir)):
                return None
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
        hf_source: Sequence[Descriptor] = (),
    ) -> LocalModel:
        """Adopt the converted GGUF as the model blob and write the manifest (lock held)."""
        blob = self.blobs.adopt(converted)
        layers = [_model_layer(blob, f"{info.name or name.name}.gguf")]
        layers += self._text_layers(MediaType.LICENSE, read_license_file(folder))
        layers += self._text_layers(MediaType.CARD, read_card(folder))
        layers += hf_source
        config = _config(info, license_id=license_id or info.license, source=source)
        return self._commit(name, config, layers)

    def _hf_source_layers(
        self, folder: Path, progress: Progress | None
    ) -> builtins.list[Descriptor]:
        """The folder's top-level config, tokenizer and safetensors files as blobs (lock held;
        a file already stored is not stored twice). Pickles are never kept."""
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix in HF_SOURCE_SUFFIXES and not p.name.startswith(".")
        )
        total, done = sum(p.stat().st_size for p in files), 0
        layers: builtins.list[Descriptor] = []
        for path in files:
            blob = self.blobs.write_file(path, progress=_shifted(progress, done, total))
            done += blob.size
            annotations = {TITLE_ANNOTATION: path.name}
            layers.append(Descriptor(MediaType.HF_FILE, blob.digest, blob.size, annotations))
        return layers

    def _check_gguf_blob(self, blob: Blob) -> GGUFInfo:
        try:
            return read_gguf_info(self.blobs.path(blob.digest))
        except InvalidModelFileError:
            self._collect({blob.digest})  # don't keep a blob nothing can use
            raise

    def _no_source(self, name: str, wanted: ModelName) -> Exception:
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

    # Quantizing (llama.cpp's part lives in hearth/store/quantize.py) ---------------------------

    def quantize(
        self,
        name: str,
        to: str,
        target_name: str | None = None,
        imatrix: Path | None = None,
        progress: Progress | None = None,
    ) -> LocalModel:
        """Quantize ``name`` to ``to`` (Q4_K_M, Q8_0, ...) and store it as a new model.

        The target defaults to :func:`default_target_name` (``gemma3:270m-q8_0``); the source's
        other layers (license, template, params, system) are kept and the config's ``source``
        says ``quantized:<source model digest>``. ``progress(done, total)`` counts tensors.
        Quantizing runs without the lock, into ``blobs/.tmp-quantize-*.gguf``.
        """
        quant, ftype = parse_quant_type(to)
        source = self.resolve(name)
        target = parse_name(target_name or default_target_name(source.name, quant))
        requantize = is_requantize(source.info.quantization)
        if requantize:
            log.warning(
                "%s is already %s: requantizing loses quality twice", name, source.info.quantization
            )
        options = QuantizeOptions(ftype, self.threads, allow_requantize=requantize, imatrix=imatrix)
        self.blobs.root.mkdir(parents=True, exist_ok=True)
        output = self.blobs.root / f"{TEMP_PREFIX}quantize-{uuid.uuid4().hex}.gguf"
        try:
            quantize_gguf(source.model_path, output, options, progress)
            read_gguf_shape(output)  # a readable header (fast; no vocabulary parsing)
            with self._locked():
                return self._commit_quantized(source, target, output, quant)
        finally:
            output.unlink(missing_ok=True)  # gone already unless something failed

    def _commit_quantized(
        self, source: LocalModel, target: ModelName, output: Path, quant: str
    ) -> LocalModel:
        layers = list(source.manifest.layers)
        missing = [layer.digest for layer in layers if not self.blobs.has(layer.digest)]
        if missing:  # the source was removed while we quantized
            raise StoreError(f"{source.name} changed while quantizing (blobs {missing} are gone)")
        blob = self.blobs.adopt(output)
        source_digest = next(
            layer.digest for layer in layers if layer.media_type == MediaType.MODEL
        )
        title = f"{source.name.name}-{quant.lower()}.gguf"
        layers = [
            _model_layer(blob, title) if layer.media_type == MediaType.MODEL else layer
            for layer in layers
        ]
        from hearth.license.lineage import LineageStep, derived_layers  # reads the store: late

        layers = derived_layers(self, source, layers, LineageStep.now("quantize", source))
        config = ModelConfig.from_json(self._read_blob(source.name, source.manifest.config.digest))
        config = replace(
            config,
            quantization=quant,
            source=f"quantized:{source_digest}",
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        return self._commit(target, config, layers)

    # Internals for hearth/store/sources/huggingface.py ---------------------------------------

    def _add_gguf(
        self,
        name: ModelName,
        deliver: Callable[[BlobStore], Blob],
        filename: str,
        *,
        license_text: str | None,
        card: str | None,
        license_id: str | None,
        source: str,
    ) -> LocalModel:
        """Store the GGUF blob ``deliver`` writes (under the lock) with its text layers."""
        with self._locked():
            blob = deliver(self.blobs)
            info = self._check_gguf_blob(blob)
            layers = [_model_layer(blob, filename)]
            layers += self._text_layers(MediaType.LICENSE, license_text)
            layers += self._text_layers(MediaType.CARD, card)
            config = _config(info, license_id=license_id or info.license, source=source)
            return self._commit(name, config, layers)

    def _add_converted_folder(
        self,
        name: ModelName,
        folder: Path,
        model_name: str,
        source: str,
        progress: Progress | None,
    ) -> LocalModel:
        """Convert a downloaded Hugging Face folder and store it (as ``import_hf_dir`` does)."""
        converted, info = self._convert(folder, model_name, progress)
        try:
            with self._locked():
                return self._commit_converted(name, converted, info, folder, None, source)
        finally:
            converted.unlink(missing_ok=True)


def _shifted(progress: Progress | None, offset: int, total: int) -> Progress | None:
    """One file's progress as part of several files' total."""
    if progress is None:
        return None
    return lambda done, _total: progress(offset + done, total)


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
