"""Usage records: one row per API request, written off the request path.

Request handlers call :meth:`UsageLog.record`, which only puts the record on a queue; one writer
thread takes records off in batches and inserts each batch in one transaction, so a handler never
waits for the database. :meth:`UsageLog.flush` waits until everything recorded so far is written;
:meth:`UsageLog.close` writes the rest and stops the thread (the server calls it on shutdown).
A batch the database refuses is retried a few times, then logged and dropped: losing usage rows
is better than taking the server down with the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Engine, Float, Integer, String, Text, case, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from hearth.db import Base, Sessions, UTCDateTime, utcnow
from hearth.errors import ValidationError
from hearth.writer import BackgroundWriter

UsageStatus = Literal["ok", "error", "aborted", "filtered"]  # filtered: a safety rule stopped it
GroupBy = Literal["key", "model"]

log = logging.getLogger(__name__)

BATCH_SIZE = 500
COALESCE_SECONDS = 0.5
RETRY_DELAYS = (0.1, 0.5, 2.0)  # seconds between attempts at a batch the database refused


class UsageRecordRow(Base):
    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    key_name: Mapped[str | None] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(255), index=True)
    adapter: Mapped[str | None] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


@dataclass(frozen=True, kw_only=True)
class UsageRecord:
    """One request: who (key), what (model, adapter, endpoint), how much, how fast, how it ended."""

    request_id: str
    key_name: str | None  # None when the server runs without keys
    model: str
    adapter: str | None = None
    endpoint: str  # e.g. "/v1/chat/completions"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache
    ttft_ms: float | None = None  # time to first token; None when none was produced
    duration_ms: float = 0.0
    status: UsageStatus = "ok"
    error: str | None = None  # the error message when status is "error"
    created: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class UsageRow:
    """Totals for one key (None: requests made without a key) or one model."""

    group: str | None
    requests: int
    errors: int
    aborted: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    mean_ttft_ms: float | None
    mean_duration_ms: float
    filtered: int = 0  # answers a safety rule stopped (finish reason content_filter)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageLog(BackgroundWriter[UsageRecord]):
    """Usage records in the database behind ``engine`` (table ``usage_records``), written by a
    background thread in one commit per 0.5 s window (measured: 11 ms more median time to first
    token when every request committed at once)."""

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = BATCH_SIZE,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        super().__init__("usage log", batch_size, COALESCE_SECONDS)
        self._sessions = Sessions(engine, UsageRecordRow.__table__)  # type: ignore[arg-type]
        self._retry_delays = tuple(retry_delays)

    def record(self, record: UsageRecord) -> None:
        """Queue ``record`` for writing; never waits for the database. Thread-safe."""
        self._queue_item(record)

    def __enter__(self) -> UsageLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def summary(self, since: datetime | None = None, group_by: GroupBy = "key") -> list[UsageRow]:
        """Totals per key or per model (records queued so far included), most tokens first."""
        if group_by not in ("key", "model"):
            raise ValidationError("group_by", group_by, "must be 'key' or 'model'")
        self.flush()
        table = UsageRecordRow
        column = table.key_name if group_by == "key" else table.model
        query = select(
            column,
            func.count(),
            _count_where(table.status == "error"),
            _count_where(table.status == "aborted"),
            func.coalesce(func.sum(table.prompt_tokens), 0),
            func.coalesce(func.sum(table.completion_tokens), 0),
            func.coalesce(func.sum(table.cached_tokens), 0),
            func.avg(table.ttft_ms),
            func.avg(table.duration_ms),
            _count_where(table.status == "filtered"),
        ).group_by(column)
        if since is not None:
            query = query.where(table.created >= since)
        with self._sessions.begin() as session:
            rows = [_usage_row(values) for values in session.execute(query)]
        return sorted(rows, key=lambda row: (-row.total_tokens, row.group or ""))

    def _write(self, records: list[UsageRecord]) -> None:
        rows = [asdict(record) for record in records]
        for delay in (*self._retry_delays, None):
            try:
                with self._sessions.begin() as session:
                    session.execute(insert(UsageRecordRow), rows)
                return
            except Exception:
                if delay is None:
                    log.exception("dropped %d usage records the database refused", len(rows))
                    return
                log.warning("writing %d usage records failed; retrying", len(rows), exc_info=True)
                time.sleep(delay)


def _count_where(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _usage_row(values: Sequence[Any]) -> UsageRow:
    group, requests, errors, aborted, prompt, completion, cached, ttft, duration, filtered = values
    return UsageRow(
        group=group,
        requests=int(requests),
        errors=int(errors),
        aborted=int(aborted),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        cached_tokens=int(cached),
        mean_ttft_ms=None if ttft is None else float(ttft),
        mean_duration_ms=float(duration or 0.0),
        filtered=int(filtered),
    )
