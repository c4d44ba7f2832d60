"""Recorded acceptances of a model's license terms (``--accept-license``).

One JSON object per line in ``HEARTH_HOME/license-acceptances.jsonl``: who accepted (the OS user
for the CLI, the API key's name for the server), when, which model (name and ID), which license
and which text (the SHA-256 of the license texts the model carries, or of the catalogue entry
when it carries none). An append-only text file, beside the store it describes: it needs no
database (``hearth pull`` works without one), survives a copy of HEARTH_HOME, and is easy to
audit with ``grep``. An acceptance counts only while the model carries the same license text: a
changed text must be accepted again.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hearth.errors import ConfigError

ACCEPTANCES_FILE = "license-acceptances.jsonl"


@dataclass(frozen=True)
class Acceptance:
    who: str
    at: str  # ISO 8601, UTC
    model: str
    model_id: str  # manifest digest
    license_id: str
    text_digest: str

    def describe(self) -> str:
        return f"{self.who} at {self.at}"


class AcceptanceLog:
    def __init__(self, home: Path) -> None:
        self.path = home / ACCEPTANCES_FILE  # no I/O until used

    def record(
        self, who: str, model: str, model_id: str, license_id: str, text_digest: str
    ) -> Acceptance:
        at = datetime.now(UTC).isoformat(timespec="seconds")
        entry = Acceptance(who, at, model, model_id, license_id, text_digest)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry), ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # one whole line per writer
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        return entry

    def all(self) -> list[Acceptance]:
        if not self.path.is_file():
            return []
        entries = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(Acceptance(**json.loads(line)))
            except (ValueError, TypeError) as error:
                raise ConfigError(
                    f"{self.path}:{number}: not an acceptance record ({error})"
                ) from None
        return entries

    def find(self, license_id: str, text_digest: str, model: str) -> Acceptance | None:
        """The latest acceptance of this license text for ``model`` (by name)."""
        matches = [
            a
            for a in self.all()
            if a.license_id == license_id and a.text_digest == text_digest and a.model == model
        ]
        return matches[-1] if matches else None
