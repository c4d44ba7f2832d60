"""The dashboard's overview, computed from usage rows: totals, latency percentiles, and series
of requests, tokens, errors and throughput over a window cut into equal buckets.

Percentiles need the rows themselves, so at most :data:`MAX_ROWS` of the window's most recent
rows are read; the answer says when the window held more (``sampled``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from hearth.db import Sessions, utcnow
from hearth.errors import ValidationError
from hearth.server.usage import UsageRecordRow

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
BUCKETS = 24
MAX_ROWS = 100_000


@dataclass(frozen=True)
class Point:
    """What the overview needs of one usage row."""

    created: datetime
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float
    ttft_ms: float | None
    status: str


class UsageReader:
    """Reads usage rows for the overview (the usage log only writes and totals them)."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = Sessions(engine, UsageRecordRow.__table__)  # type: ignore[arg-type]

    def points(self, since: datetime, limit: int = MAX_ROWS) -> list[Point]:
        """The most recent rows since ``since`` (at most ``limit``), oldest first."""
        table = UsageRecordRow
        query = (
            select(
                table.created,
                table.prompt_tokens,
                table.completion_tokens,
                table.duration_ms,
                table.ttft_ms,
                table.status,
            )
            .where(table.created >= since)
            .order_by(table.created.desc())
            .limit(limit)
        )
        with self._sessions.begin() as session:
            points = [Point(*row) for row in session.execute(query)]
        points.reverse()
        return points


def window_of(name: str) -> timedelta:
    if name not in WINDOWS:
        raise ValidationError("window", name, f"must be one of {', '.join(WINDOWS)}")
    return WINDOWS[name]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def overview(
    points: Sequence[Point], window: timedelta, now: datetime | None = None, *, sampled: bool
) -> dict[str, Any]:
    end = now or utcnow()
    start = end - window
    durations = [p.duration_ms for p in points]
    ttfts = [p.ttft_ms for p in points if p.ttft_ms is not None]
    return {
        "window_seconds": window.total_seconds(),
        "sampled": sampled,
        "totals": {
            "requests": len(points),
            "errors": sum(p.status == "error" for p in points),
            "aborted": sum(p.status == "aborted" for p in points),
            "filtered": sum(p.status == "filtered" for p in points),  # stopped by a safety rule
            "prompt_tokens": sum(p.prompt_tokens for p in points),
            "completion_tokens": sum(p.completion_tokens for p in points),
        },
        "latency_ms": {
            "p50": percentile(durations, 0.50),
            "p95": percentile(durations, 0.95),
            "ttft_p50": percentile(ttfts, 0.50),
            "ttft_p95": percentile(ttfts, 0.95),
        },
        "series": series(points, start, end),
    }


def series(points: Sequence[Point], start: datetime, end: datetime) -> dict[str, Any]:
    """Per bucket: requests, tokens (prompt + completion), errors, and throughput (completion
    tokens per second of the bucket)."""
    width = (end - start) / BUCKETS
    requests, tokens, errors, generated = ([0] * BUCKETS for _ in range(4))
    for point in points:
        index = min(BUCKETS - 1, max(0, int((point.created - start) / width)))
        requests[index] += 1
        tokens[index] += point.prompt_tokens + point.completion_tokens
        errors[index] += point.status == "error"
        generated[index] += point.completion_tokens
    seconds = width.total_seconds()
    return {
        "start": start.isoformat(),
        "bucket_seconds": seconds,
        "requests": requests,
        "tokens": tokens,
        "errors": errors,
        "tokens_per_second": [round(count / seconds, 3) for count in generated],
    }
