"""Content digests: ``sha256:<64 lowercase hex>``, validated before any path is built from one."""

from __future__ import annotations

import hashlib
import re

from hearth.errors import InvalidDigestError

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
ALGORITHM = "sha256"


def validate_digest(digest: str) -> str:
    """Return ``digest`` unchanged if it is ``sha256:<64 lowercase hex>``, else raise."""
    # fullmatch, not match: ``$`` alone would accept a trailing newline.
    if not isinstance(digest, str) or DIGEST_RE.fullmatch(digest) is None:
        raise InvalidDigestError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex>")
    return digest


def blob_filename(digest: str) -> str:
    """The file name of a blob: ``sha256-<hex>`` (``:`` is not portable in file names)."""
    return validate_digest(digest).replace(":", "-", 1)


def digest_from_filename(filename: str) -> str | None:
    """Inverse of :func:`blob_filename`; None for anything that is not a blob name."""
    algorithm, _, hexpart = filename.partition("-")
    candidate = f"{algorithm}:{hexpart}"
    return candidate if DIGEST_RE.fullmatch(candidate) else None


def digest_bytes(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def short_id(digest: str) -> str:
    """The first 12 hex digits, as ``hearth list`` shows them."""
    return validate_digest(digest).split(":", 1)[1][:12]
