"""A derivative's license record: the base model's terms plus the steps that made it.

``hearth quantize``, ``hearth create`` and fine-tuning add a small JSON layer
(:data:`LICENSE_RECORD`) to the model they derive: the license id and version the base was
under, what that was detected from, and the lineage (one :class:`LineageStep` per derivation,
oldest first; no timestamps, so the same recipe gives the same layers). A derivative of a
derivative extends its base's record, so the chain survives even when the base is deleted,
pushed or exported without it. When the terms require a notice
with every copy (Gemma §3.1, Llama §1.b.iii), a :data:`NOTICE` text layer is added too, so
``push`` and ``export`` carry it.

For fine-tuning (``hearth/finetune``)::

    from hearth.license import LineageStep, derived_layers
    with store.locked():
        layers = derived_layers(store, base_model, layers, LineageStep.now("finetune", base_model))
        store.commit(name, config, layers)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hearth.errors import StoreError
from hearth.license.terms import load_catalogue
from hearth.store.manifest import MediaType

if TYPE_CHECKING:
    from hearth.store.manifest import Descriptor
    from hearth.store.store import LocalModel, Store

LICENSE_RECORD = MediaType.LICENSE_RECORD
NOTICE = MediaType.NOTICE
STEP_KINDS = ("quantize", "create", "finetune", "merge")


@dataclass(frozen=True)
class LineageStep:
    kind: str  # one of STEP_KINDS
    base: str  # the base model's name when the step ran
    base_digest: str  # its manifest digest (its ID); when: the derivative's config says

    @classmethod
    def now(cls, kind: str, base: LocalModel) -> LineageStep:
        if kind not in STEP_KINDS:
            raise ValueError(f"lineage step must be one of {', '.join(STEP_KINDS)}, got {kind!r}")
        return cls(kind, str(base.name), base.manifest_digest)


@dataclass(frozen=True)
class LicenseRecord:
    """The terms a derivative carries over from its base model."""

    license_id: str
    license_version: str
    evidence: tuple[str, ...]  # how the base's license was known, one line each
    lineage: tuple[LineageStep, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "license_id": self.license_id,
                "license_version": self.license_version,
                "evidence": list(self.evidence),
                "lineage": [step.__dict__ for step in self.lineage],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes, origin: str) -> LicenseRecord:
        try:
            obj: dict[str, Any] = json.loads(data)
            return cls(
                license_id=str(obj["license_id"]),
                license_version=str(obj["license_version"]),
                evidence=tuple(str(line) for line in obj["evidence"]),
                lineage=tuple(LineageStep(**step) for step in obj["lineage"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(f"{origin}: invalid license record: {error}") from None


def inherit(base_terms: LicenseRecord, step: LineageStep) -> LicenseRecord:
    """The record a derivative made by ``step`` from a base under ``base_terms`` carries."""
    return replace(base_terms, lineage=(*base_terms.lineage, step))


def read_record(store: Store, model: LocalModel) -> LicenseRecord | None:
    data = store.read_layer(model, LICENSE_RECORD)
    return None if data is None else LicenseRecord.from_json(data, str(model.name))


def base_record(store: Store, model: LocalModel) -> LicenseRecord:
    """``model``'s own record if it is a derivative, else one made from its detected license."""
    from hearth.license.detect import detect  # detect reads records too

    existing = read_record(store, model)
    if existing is not None:
        return existing
    found = detect(store, model)
    terms = load_catalogue().get(found.license_id)
    evidence = tuple(item.describe() for item in found.evidence if item.license_id)
    return LicenseRecord(found.license_id, terms.version, evidence)


def derived_layers(
    store: Store, base: LocalModel, layers: list[Descriptor], step: LineageStep
) -> list[Descriptor]:
    """``layers`` with the base's record replaced by the derivative's, and the license's
    notice added if it needs one and has none. Call inside ``store.locked()``."""
    record = inherit(base_record(store, base), step)
    kept = [layer for layer in layers if layer.media_type != LICENSE_RECORD]
    added = [store.add_text_layer(LICENSE_RECORD, record.to_json())]
    notice = load_catalogue().get(record.license_id).distribution.notice
    if notice and not any(layer.media_type == NOTICE for layer in kept):
        added.append(store.add_text_layer(NOTICE, notice + "\n"))
    return [*kept, *added]
