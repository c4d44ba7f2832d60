"""The safety audit log: one row per decision (who, when, which rule, what was done).

A row never holds the text that was checked, redacted or blocked: only the key, model,
endpoint, direction, rule, category, action and how many times the rule fired in that request
direction. Handlers call :meth:`AuditLog.record`, which queues the event and returns; one writer
thread inserts queued events in batches (as the usage log does), so a request never waits for
the database. Unlike usage rows, audit rows are not dropped when the database refuses a batch:
the writer keeps retrying (with growing pauses, up to 5 s) until it succeeds or the log is
closed; :meth:`close` (on shutdown) writes what is queued, and only if the database still
refuses after the retries does it log each lost event's fields (never text) at ERROR level.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import Engine, Integer, String, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from hearth.db import Base, Sessions, UTCDateTime, utcnow
from hearth.writer import BackgroundWriter

log = logging.getLogger(__name__)

BATCH_SIZE = 500
COALESCE_SECONDS = 0.2
MAX_PAUSE_SECONDS = 5.0
CLOSE_ATTEMPTS = 4


class AuditRow(Base):
    __tablename__ = "safety_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    key_name: Mapped[str | None] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(255), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # "input" | "output"
    rule: Mapped[str] = mapped_column(String(128))  # "pii.email", "blocklist", "pattern.x", ...
    category: Mapped[str] = mapped_column(String(64))  # "pii", "blocklist", "pattern", "S1,S10"
    action: Mapped[str] = mapped_column(String(16))  # "redact" | "block" | "log"
    count: Mapped[int] = mapped_column(Integer)  # how many times it fired in this direction


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    key_name: str | None
    model: str
    endpoint: str
    direction: str
    rule: str
    category: str
    action: str
    count: int = 1
    created: datetime = field(default_factory=utcnow)


class AuditLog(BackgroundWriter[AuditEvent]):
    """Audit events in the database behind ``engine`` (table ``safety_audit``)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__("audit log", BATCH_SIZE, COALESCE_SECONDS)
        self._sessions = Sessions(engine, AuditRow.__table__)  # type: ignore[arg-type]

    def record(self, event: AuditEvent) -> None:
        """Queue ``event``; never waits for the database. Thread-safe."""
        self._queue_item(event)

    def events(self, limit: int = 1000) -> list[AuditEvent]:
        """The latest events (queued ones included), newest first."""
        self.flush()
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        with self._sessions.begin() as session:
            return [_event(row) for row in session.scalars(query)]

    def _write(self, events: list[AuditEvent]) -> None:
        rows = [asdict(event) for event in events]
        pause, attempt = 0.1, 0
        while True:
            try:
                with self._sessions.begin() as session:
                    session.execute(insert(AuditRow), rows)
                return
            except Exception:
                attempt += 1
                if self._closed and attempt >= CLOSE_ATTEMPTS:
                    for row in rows:  # the last resort: the server's log keeps the decision
                        log.error("safety audit event not written: %s", row)
                    return
                log.warning("writing %d audit events failed; retrying", len(rows), exc_info=True)
                time.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        key_name=row.key_name,
        model=row.model,
        endpoint=row.endpoint,
        direction=row.direction,
        rule=row.rule,
        category=row.category,
        action=row.action,
        count=row.count,
        created=row.created,
    )
