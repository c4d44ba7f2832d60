"""The overview's arithmetic: nearest-rank percentiles and time buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hearth.errors import ValidationError
from hearth.server.ui.stats import BUCKETS, Point, overview, percentile, window_of

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def point(minutes_ago: float, completion: int = 10, status: str = "ok", ms: float = 100) -> Point:
    created = NOW - timedelta(minutes=minutes_ago)
    return Point(created, 5, completion, ms, ms / 2, status)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.95) == 95
    assert percentile([7.0], 0.95) == 7
    assert percentile([], 0.5) is None


def test_buckets_count_requests_tokens_errors_and_throughput() -> None:
    points = [point(59.9), point(30, status="error"), point(0.01, completion=150)]
    answer = overview(points, timedelta(hours=1), NOW, sampled=False)
    series = answer["series"]
    assert len(series["requests"]) == BUCKETS and sum(series["requests"]) == 3
    assert series["requests"][0] == 1 and series["requests"][-1] == 1
    assert sum(series["errors"]) == 1 and series["errors"][BUCKETS // 2] == 1
    assert series["tokens"][-1] == 155
    assert series["tokens_per_second"][-1] == pytest.approx(150 / 150)  # 150 s buckets
    assert answer["totals"] == {
        "requests": 3,
        "errors": 1,
        "aborted": 0,
        "filtered": 0,
        "prompt_tokens": 15,
        "completion_tokens": 170,
    }


def test_an_unknown_window_is_a_400() -> None:
    assert window_of("7d") == timedelta(days=7)
    with pytest.raises(ValidationError):
        window_of("1y")
