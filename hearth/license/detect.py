"""Which license a stored model is under, from every piece of evidence the store holds.

Evidence, each with its own confidence:

- the catalogue, when the model came from a catalogue package (``source`` ``package:<dist>``);
- the license id recorded in the model's config when it was stored;
- the GGUF's ``general.license``, ``general.license.name`` and ``general.license.link``;
- the model card's front matter: ``license``, ``license_name``, ``license_link``;
- each LICENSE layer's text, matched by fingerprint (:mod:`hearth.license.fingerprint`);
- a derivative's license record (:mod:`hearth.license.lineage`).

Identifiers that say nothing (``other``, ``unknown``) are skipped. When every identifying piece
agrees the model gets that license; pieces that name different licenses make a conflict (the
decision is "needs review" and both are shown); identifiers the catalogue lacks make the license
unknown, with the identifier shown. Nothing is guessed.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.license.fingerprint import match_text
from hearth.license.lineage import LicenseRecord, read_record
from hearth.license.terms import UNKNOWN, Catalogue, load_catalogue
from hearth.store.catalogue import CATALOGUE
from hearth.store.gguf_shape import _MetadataScanner
from hearth.store.manifest import MediaType

if TYPE_CHECKING:
    from hearth.store.store import LocalModel, Store

PLACEHOLDERS = frozenset({"", "other", "unknown", "none", "noassertion", "custom"})
CONFIDENCE = {
    "catalogue": 0.99,
    "license record": 0.95,
    "model card": 0.9,
    "gguf": 0.85,
    "config": 0.8,
    "link": 0.8,
}
GGUF_LICENSE_KEYS = ("general.license", "general.license.name", "general.license.link")
CARD_LICENSE_KEYS = ("license", "license_name", "license_link")
_CACHE_LIMIT = 512


@dataclass(frozen=True)
class Evidence:
    source: str  # "gguf general.license", "model card license", "LICENSE text", ...
    value: str  # what the source says (an identifier, a link, "92% similar to ...")
    license_id: str | None  # the catalogue license it names; None if it names none we know
    confidence: float
    identifies: bool = True  # False: shown, but neither supports nor contradicts (a bare link)

    def describe(self) -> str:
        names = f" → {self.license_id}" if self.license_id and self.license_id != self.value else ""
        return f"{self.source}: {self.value}{names} ({self.confidence:.0%})"


@dataclass(frozen=True)
class Detection:
    license_id: str  # a catalogue id; "unknown" when nothing identifies one
    confidence: float
    evidence: tuple[Evidence, ...]
    conflicting: tuple[str, ...] = ()  # every license named when the evidence disagrees
    unknown_ids: tuple[str, ...] = ()  # identifiers the catalogue lacks
    record: LicenseRecord | None = None  # a derivative's lineage

    @property
    def is_conflict(self) -> bool:
        return len(self.conflicting) > 1

    @property
    def confidence_label(self) -> str:
        if self.confidence >= 0.9:
            return "high"
        return "medium" if self.confidence >= 0.6 else "low"


_cache: dict[tuple[Path, str], Detection] = {}


def detect(store: Store, model: LocalModel) -> Detection:
    """The model's license (cached by manifest digest: a manifest never changes in place)."""
    key = (store.home, model.manifest_digest)
    found = _cache.get(key)
    if found is None:
        found = combine(gather_evidence(store, model), read_record(store, model))
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = found
    return found


def gather_evidence(store: Store, model: LocalModel) -> list[Evidence]:
    catalogue = load_catalogue()
    evidence = list(_catalogue_evidence(model.info.source, catalogue))
    recorded = model.info.license_id or ""
    if recorded.strip().lower() not in PLACEHOLDERS:
        evidence.append(identifier("config", "license_id", recorded, catalogue))
    evidence += gguf_evidence(read_gguf_license(model.model_path), catalogue)
    card = store.read_layer(model, MediaType.CARD)
    if card is not None:
        evidence += card_evidence(front_matter(card.decode("utf-8", "replace")), catalogue)
    evidence += text_evidence(store.licenses(model))
    return evidence


def combine(evidence: Iterable[Evidence], record: LicenseRecord | None = None) -> Detection:
    """One license from the evidence: agreement, a conflict, or unknown."""
    items = list(evidence)
    if record is not None:
        items.append(
            Evidence(
                "license record",
                f"derived from {record.lineage[0].base}" if record.lineage else "recorded",
                None if record.license_id == UNKNOWN else record.license_id,
                CONFIDENCE["license record"],
            )
        )
    identifying = [item for item in items if item.identifies]
    unknown_ids = tuple(dict.fromkeys(i.value for i in identifying if i.license_id is None))
    support: dict[str, float] = {}
    for item in identifying:
        if item.license_id is not None:  # confidences combine as independent sources
            support[item.license_id] = 1 - (1 - support.get(item.license_id, 0)) * (
                1 - item.confidence
            )
    named = tuple(sorted(support, key=lambda lid: -support[lid])) + unknown_ids
    if not support:
        return Detection(UNKNOWN, 0.0, tuple(items), named, unknown_ids, record)
    best = named[0]
    confidence = support[best] if len(named) == 1 else min(support[best], 0.5)
    return Detection(best, round(confidence, 3), tuple(items), named, unknown_ids, record)


def identifier(source: str, key: str, value: str, catalogue: Catalogue) -> Evidence:
    """Evidence from an identifier (``gemma``, ``Llama-3.1``) or, for ``*link`` keys, a URL."""
    label = f"{source} {key}"
    if key.endswith("link"):
        found = catalogue.resolve_url(value)
        weight = CONFIDENCE["link"]
        return Evidence(label, value, found.id if found else None, weight, found is not None)
    found = catalogue.resolve(value)
    return Evidence(label, value, found.id if found else None, CONFIDENCE[source])


def gguf_evidence(fields: Mapping[str, str], catalogue: Catalogue) -> list[Evidence]:
    return [
        identifier("gguf", key, value, catalogue)
        for key, value in fields.items()
        if value.strip().lower() not in PLACEHOLDERS
    ]


def card_evidence(fields: Mapping[str, str], catalogue: Catalogue) -> list[Evidence]:
    return [
        identifier("model card", key, fields[key], catalogue)
        for key in CARD_LICENSE_KEYS
        if fields.get(key, "").strip().lower() not in PLACEHOLDERS
    ]


def text_evidence(texts: Iterable[str]) -> list[Evidence]:
    found = []
    for text in texts:
        match = match_text(text)
        if match is None:
            found.append(Evidence("LICENSE text", "not recognised", None, 0.0, identifies=False))
        else:
            value = f"{match.similarity:.0%} similar to {match.license_id}"
            found.append(Evidence("LICENSE text", value, match.license_id, match.similarity))
    return found


def read_gguf_license(path: Path) -> dict[str, str]:
    """The GGUF's license keys, from a metadata scan (tens of milliseconds, even for Gemma)."""
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            metadata, _ = _MetadataScanner(data).scan()
    except (OSError, ValueError) as error:
        return {"general.license": f"unreadable GGUF metadata ({error})"}
    return {k: str(metadata[k]) for k in GGUF_LICENSE_KEYS if isinstance(metadata.get(k), str)}


def front_matter(card: str) -> dict[str, str]:
    """Top-level ``key: value`` scalars of a model card's YAML front matter."""
    lines = card.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, sep, value = line.partition(":")
        if sep and line[:1].strip() and not key.startswith("-"):
            fields[key.strip()] = value.strip().strip("'\"")
    return fields


def _catalogue_evidence(source: str, catalogue: Catalogue) -> list[Evidence]:
    if not source.startswith("package:"):
        return []
    package = source.removeprefix("package:").split("==", 1)[0]
    entry = next((e for e in CATALOGUE if e.package == package), None)
    if entry is None:
        return []
    found = catalogue.resolve(entry.license_id)
    value = f"{entry.name} ({entry.license_id})"
    return [Evidence("catalogue", value, found.id if found else None, CONFIDENCE["catalogue"])]


def evidence_dict(item: Evidence) -> dict[str, Any]:
    return {
        "source": item.source,
        "value": item.value,
        "license_id": item.license_id,
        "confidence": item.confidence,
        "identifies": item.identifies,
    }
