"""PII and secret detectors: one bounded regular expression per kind, plus a check where the
format has one (Luhn for cards, mod-97 for IBANs, the address parser for IPv6, entropy for
anonymous tokens).

Every pattern's repetitions have an upper bound, so a scan costs time linear in the text and
no match is longer than :data:`MAX_MATCH` characters. The kinds (``PII_KINDS``):

- ``email``: local part @ domain with a 2-24 letter top-level domain.
- ``phone``: 9-15 digits in groups of 2-4 separated by spaces or dashes, optionally with a
  ``+country`` code or an ``(area)`` code; a bare run of digits is not a phone number.
- ``card``: 13-19 digits in groups of four (or American Express's 4-6-5), separated by
  nothing, spaces or dashes (one kind), passing the Luhn check.
- ``iban``: two letters, two check digits, 11-30 letters/digits (spaces every 4 allowed), whose
  ISO 13616 mod-97 remainder is 1.
- ``national_id``: US Social Security numbers in their dashed form (``123-45-6789``; area 000,
  666 and 900-999, group 00 and serial 0000 are never issued, so never matched) and UK National
  Insurance numbers (``AB 12 34 56 C``, with HMRC's invalid prefixes excluded).
- ``ip``: IPv4 dotted quads (each part 0-255) and IPv6 addresses (anything
  :class:`ipaddress.IPv6Address` accepts with at least two colons and three hex digits).
- ``secret``: ``sk-`` keys (OpenAI, Anthropic ``sk-ant-``), AWS access key ids
  (``AKIA``/``ASIA`` + 16), GitHub tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``,
  ``github_pat_``), Slack tokens (``xox[abprs]-``), Hearth keys (``hth_``), PEM private-key
  headers, and any other token of 32-256 letters, digits, ``+/_-`` with both letters and digits
  and a Shannon entropy over 4.1 bits per character (a random 32-character base64 token has
  about 4.5-4.8; hex can have at most 4, so hex digests and UUIDs do not count as secrets).
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import regex

PII_KINDS = ("email", "phone", "card", "iban", "national_id", "ip", "secret")
MAX_MATCH = 300  # no detector matches more characters than this


@dataclass(frozen=True)
class Found:
    """One detected span of ``text[start:end]``; ``kind`` is one of PII_KINDS."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Detector:
    """One pattern of a PII kind and the check its matches must pass."""

    kind: str
    pattern: regex.Pattern[str]
    valid: Callable[[str], bool]


def _always(_: str) -> bool:
    return True


def luhn_valid(number: str) -> bool:
    """The Luhn checksum of the digits in ``number`` (other characters ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _phone_valid(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 9 <= digits <= 15


def _ipv6_valid(candidate: str) -> bool:
    if candidate.count(":") < 2 or sum(c not in ":" for c in candidate) < 3:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s character distribution."""
    counts = Counter(text)
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _high_entropy(candidate: str) -> bool:
    has_letter = any(c.isalpha() for c in candidate)
    has_digit = any(c.isdigit() for c in candidate)
    return has_letter and has_digit and shannon_entropy(candidate) > 4.1


_IPV4_PART = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "secret",
        regex.compile(
            r"(?<![\w-])(?:sk-[A-Za-z0-9_-]{20,200}|(?:AKIA|ASIA)[0-9A-Z]{16}"
            r"|gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,240}"
            r"|xox[abprs]-[A-Za-z0-9-]{10,200}|hth_[A-Za-z0-9_-]{43}"
            r"|-----BEGIN (?:[A-Z]{1,10} )?PRIVATE KEY-----)(?![\w-])"
        ),
        _always,
    ),
    Detector(
        "email",
        regex.compile(
            r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,6}"
            r"\.[A-Za-z]{2,24}(?![\w-])"
        ),
        _always,
    ),
    Detector(
        "iban",
        regex.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)"),
        iban_valid,
    ),
    Detector(
        "card",
        regex.compile(  # 4-4-4-(1..7) groups, or American Express's 4-6-5; one separator kind
            r"(?<![\d-])(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -]?)\d{6}\2\d{5})(?![\d-])"
        ),
        luhn_valid,
    ),
    Detector(  # US Social Security number, dashed
        "national_id",
        regex.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"),
        _always,
    ),
    Detector(  # UK National Insurance number
        "national_id",
        regex.compile(
            r"(?<!\w)(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"
        ),
        _always,
    ),
    Detector(
        "ip",
        regex.compile(rf"(?<![\w.])(?:{_IPV4_PART}\.){{3}}{_IPV4_PART}(?![\w.]|\.\d)"),
        _always,
    ),
    Detector(
        "ip",
        regex.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ipv6_valid,
    ),
    Detector(
        "phone",
        regex.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ -]?)?(?:\(\d{1,4}\)[ -]?)?"
            r"\d{2,4}(?:[ -]\d{2,4}){1,5}(?![\w-])"
            r"|(?<![\w+])\+\d{8,15}(?!\w)"
        ),
        _phone_valid,
    ),
    Detector(
        "secret", regex.compile(r"(?<![\w+/-])[A-Za-z0-9+/_-]{32,256}+(?![\w+/-])"), _high_entropy
    ),
)


def detectors(kinds: frozenset[str] | None = None) -> list[Detector]:
    """The detectors of the chosen ``kinds`` (all when None), in a fixed order."""
    return [d for d in _DETECTORS if kinds is None or d.kind in kinds]


def find_pii(text: str, kinds: frozenset[str] | None = None) -> list[Found]:
    """Every detected span of the chosen ``kinds`` (all when None), in text order; spans of
    different detectors may overlap (the pipeline merges them)."""
    found = []
    for detector in detectors(kinds):
        for match in detector.pattern.finditer(text):
            if detector.valid(match.group()):
                found.append(Found(detector.kind, match.start(), match.end()))
    found.sort(key=lambda f: (f.start, -f.end))
    return found
