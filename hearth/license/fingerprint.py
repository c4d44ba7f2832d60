"""Recognising a license from its text, not from its first words.

A text is normalised (lowercase, punctuation dropped, whitespace collapsed), cut into
overlapping 5-word shingles, and each shingle hashed to 64 bits. A fingerprint keeps the
:data:`SKETCH_SIZE` smallest hashes (a bottom-k sketch); two fingerprints estimate the Jaccard
similarity of the shingle sets (the share of the union's smallest hashes found in both). A
renamed copyright holder, a note appended by a converter or reflowed lines move the score a
little; another license's text scores near 0.

Reference fingerprints come from the standard texts shipped under ``catalogue/texts/`` and, for
texts Hearth does not ship (the Gemma terms), from ``catalogue/fingerprints.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources

from hearth.license.terms import CATALOGUE_DIR, load_catalogue, read_reference_text

SHINGLE_WORDS = 5
SKETCH_SIZE = 256
MATCH_THRESHOLD = 0.5  # similarity from which a text counts as evidence of a license
FINGERPRINTS_FILE = "fingerprints.json"


@dataclass(frozen=True)
class Fingerprint:
    hashes: tuple[int, ...]  # sorted, at most SKETCH_SIZE

    def similarity(self, other: Fingerprint) -> float:
        """Estimated Jaccard similarity of the two texts' shingle sets."""
        mine, theirs = set(self.hashes), set(other.hashes)
        union = sorted(mine | theirs)[:SKETCH_SIZE]
        if not union:
            return 0.0
        return sum(1 for h in union if h in mine and h in theirs) / len(union)


@dataclass(frozen=True)
class TextMatch:
    license_id: str
    similarity: float


def normalise(text: str) -> list[str]:
    """The text's words: lowercase, punctuation removed, whitespace collapsed."""
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def fingerprint(text: str) -> Fingerprint:
    words = normalise(text)
    count = max(len(words) - SHINGLE_WORDS + 1, 1 if words else 0)
    hashes = {_hash(" ".join(words[i : i + SHINGLE_WORDS])) for i in range(count)}
    return Fingerprint(tuple(sorted(hashes)[:SKETCH_SIZE]))


def match_text(text: str) -> TextMatch | None:
    """The catalogue license ``text`` is (best similarity at or above the threshold), or None."""
    probe = fingerprint(text)
    scores = [(probe.similarity(ref), license_id) for license_id, ref in references().items()]
    if not scores:
        return None
    best, license_id = max(scores)
    return TextMatch(license_id, round(best, 3)) if best >= MATCH_THRESHOLD else None


@functools.cache
def references() -> dict[str, Fingerprint]:
    """Reference fingerprints by license id (computed once per process)."""
    shipped = _shipped_fingerprints()
    found: dict[str, Fingerprint] = {}
    for terms in load_catalogue():
        text = read_reference_text(terms)
        if text is not None:
            found[terms.id] = fingerprint(text)
        elif terms.reference_fingerprint in shipped:
            found[terms.id] = shipped[terms.reference_fingerprint]
    return found


def fingerprint_json(text: str, source: str) -> dict[str, object]:
    """An entry for ``fingerprints.json`` (how the Gemma entry was made; see docs/LICENSES.md)."""
    return {"source": source, "hashes": [f"{h:016x}" for h in fingerprint(text).hashes]}


def _shipped_fingerprints() -> dict[str, Fingerprint]:
    path = resources.files("hearth.license").joinpath(CATALOGUE_DIR, FINGERPRINTS_FILE)
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        key: Fingerprint(tuple(sorted(int(h, 16) for h in entry["hashes"])))
        for key, entry in data.items()
    }


def _hash(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=8).digest(), "big")
