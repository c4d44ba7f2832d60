"""OCI image manifests for models, so a model moves to and from any OCI registry.

A model is an OCI artifact (image-spec 1.1) of ``artifactType`` ``application/vnd.hearth.model.v1``:
the config blob is a small JSON :class:`ModelConfig`, and each layer is one file (the GGUF, a
LoRA adapter, a chat template, parameters, a system prompt, the license text, the model card),
told apart by its media type (:class:`MediaType`). docs/STORE.md shows a whole manifest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hearth.errors import HearthError, StoreError
from hearth.store.digest import validate_digest

_T = TypeVar("_T")

SCHEMA_VERSION = 2
TITLE_ANNOTATION = "org.opencontainers.image.title"


class MediaType:
    """Media types of manifests, configs and layers (constants, never loose strings)."""

    MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    ARTIFACT = "application/vnd.hearth.model.v1"
    CONFIG = "application/vnd.hearth.model.config.v1+json"
    MODEL = "application/vnd.hearth.model.gguf"
    ADAPTER = "application/vnd.hearth.model.adapter.gguf"
    TEMPLATE = "application/vnd.hearth.model.template.jinja"
    PARAMS = "application/vnd.hearth.model.params+json"
    SYSTEM = "application/vnd.hearth.model.system.txt"
    MESSAGES = "application/vnd.hearth.model.messages+json"  # a Modelfile's MESSAGE history
    LICENSE = "application/vnd.hearth.model.license.txt"
    CARD = "application/vnd.hearth.model.card.md"  # a converted model's README.md
    LINEAGE = "application/vnd.hearth.model.lineage+json"  # how a fine-tune was made
    LICENSE_RECORD = "application/vnd.hearth.model.license-record+json"  # a derivative's terms
    NOTICE = "application/vnd.hearth.model.notice.txt"  # a notice the license says to carry
    HF_FILE = "application/vnd.hearth.hf.file"  # one file of an imported HF folder (its title)

    LAYERS = frozenset(
        {
            MODEL,
            ADAPTER,
            TEMPLATE,
            PARAMS,
            SYSTEM,
            MESSAGES,
            LICENSE,
            CARD,
            LINEAGE,
            LICENSE_RECORD,
            NOTICE,
            HF_FILE,
        }
    )


class _Invalid(ValueError):
    """A field is wrong; turned into StoreError with the file's path by the caller."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_dict(cls, data: object) -> Descriptor:
        obj = _object(data, "descriptor")
        size = _int(obj, "size")
        if size < 0:
            raise _Invalid(f"size must not be negative, got {size}")
        try:
            digest = validate_digest(_str(obj, "digest"))
        except HearthError as error:
            raise _Invalid(str(error)) from None
        return cls(_str(obj, "mediaType"), digest, size, _annotations(obj))


@dataclass(frozen=True)
class ModelConfig:
    """The config blob: what ``hearth show`` prints without opening the GGUF."""

    format: str
    architecture: str
    parameter_count: int
    quantization: str
    context_length: int | None  # None: the GGUF does not say
    license_id: str | None
    source: str
    created: str  # ISO 8601, UTC
    has_chat_template: bool = False

    def to_json(self) -> bytes:
        return _dumps(
            {
                "format": self.format,
                "architecture": self.architecture,
                "parameter_count": self.parameter_count,
                "quantization": self.quantization,
                "context_length": self.context_length,
                "license_id": self.license_id,
                "source": self.source,
                "created": self.created,
                "has_chat_template": self.has_chat_template,
            }
        )

    @classmethod
    def from_json(cls, data: bytes, origin: str | Path = "config") -> ModelConfig:
        try:
            obj = _object(_loads(data), "config")
            license_id = _optional(obj, "license_id", str)
            context_length = _optional(obj, "context_length", int)
            return cls(
                format=_str(obj, "format"),
                architecture=_str(obj, "architecture"),
                parameter_count=_int(obj, "parameter_count"),
                quantization=_str(obj, "quantization"),
                context_length=context_length,
                license_id=license_id,
                source=_str(obj, "source"),
                created=_str(obj, "created"),
                has_chat_template=obj.get("has_chat_template") is True,
            )
        except _Invalid as error:
            raise StoreError(f"{origin}: invalid model config: {error}") from None


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str = MediaType.ARTIFACT

    def layer(self, media_type: str) -> Descriptor | None:
        """The first layer of ``media_type``, or None."""
        return next((d for d in self.layers if d.media_type == media_type), None)

    def digests(self) -> set[str]:
        """Every blob this manifest references (config and layers)."""
        return {self.config.digest, *(layer.digest for layer in self.layers)}

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> bytes:
        out: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "mediaType": MediaType.MANIFEST,
            "artifactType": self.artifact_type,
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return _dumps(out)

    @classmethod
    def from_json(cls, data: bytes, origin: str | Path = "manifest") -> Manifest:
        """Parse and validate; anything wrong raises StoreError naming ``origin`` (the path)."""
        try:
            return cls._from_object(_object(_loads(data), "manifest"))
        except _Invalid as error:
            raise StoreError(f"{origin}: invalid manifest: {error}") from None

    @classmethod
    def _from_object(cls, obj: dict[str, Any]) -> Manifest:
        if obj.get("schemaVersion") != SCHEMA_VERSION:
            raise _Invalid(f"schemaVersion must be {SCHEMA_VERSION}")
        if obj.get("mediaType") != MediaType.MANIFEST:
            raise _Invalid(f"mediaType must be {MediaType.MANIFEST}")
        config = Descriptor.from_dict(obj.get("config"))
        if config.media_type != MediaType.CONFIG:
            raise _Invalid(f"config mediaType must be {MediaType.CONFIG}, got {config.media_type}")
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise _Invalid("layers must be a list")
        artifact_type = obj.get("artifactType", MediaType.ARTIFACT)
        if not isinstance(artifact_type, str):
            raise _Invalid("artifactType must be a string")
        return cls(
            config=config,
            layers=tuple(Descriptor.from_dict(layer) for layer in layers),
            annotations=_annotations(obj),
            artifact_type=artifact_type,
        )


def _dumps(obj: dict[str, Any]) -> bytes:
    # Compact and in a fixed key order: the same manifest always hashes to the same digest.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(data: bytes) -> object:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Invalid(f"not JSON ({error})") from None


def _object(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Invalid(f"{what} must be a JSON object")
    return data


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{key} must be a non-empty string")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid(f"{key} must be an integer")
    return value


def _optional(obj: dict[str, Any], key: str, kind: type[_T]) -> _T | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Invalid(f"{key} must be a {kind.__name__} or null")
    return value


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    value = obj.get("annotations", {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _Invalid("annotations must map strings to strings")
    return value
