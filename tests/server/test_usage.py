"""UsageLog on SQLite and PostgreSQL: a background writer that loses nothing, and summaries."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from hearth.db import create_database_engine
from hearth.errors import HearthError, ValidationError
from hearth.server.usage import UsageLog, UsageRecord, UsageRecordRow, UsageRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(n: int, **overrides: object) -> UsageRecord:
    fields: dict[str, object] = {
        "request_id": f"req-{n}",
        "key_name": "app-1",
        "model": "tiny:latest",
        "endpoint": "/v1/chat/completions",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "duration_ms": 100.0,
        "ttft_ms": 20.0,
        "created": T0,
        **overrides,
    }
    return UsageRecord(**fields)  # type: ignore[arg-type]


def count_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(UsageRecordRow)).scalar_one()
        )


def test_fifty_threads_lose_no_record(db_engine: Engine) -> None:
    usage = UsageLog(db_engine, batch_size=64)
    start = threading.Barrier(50)

    def worker(thread: int) -> None:
        start.wait()
        for i in range(20):
            usage.record(record(thread * 100 + i, key_name=f"key-{thread % 5}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert usage.flush(timeout=60)
    assert count_rows(db_engine) == 1000
    with db_engine.connect() as connection:
        ids = connection.execute(select(UsageRecordRow.request_id)).scalars().all()
    assert len(set(ids)) == 1000
    rows = usage.summary(group_by="key")
    assert [(row.group, row.requests) for row in rows] == [(f"key-{n}", 200) for n in range(5)]
    usage.close()


def test_record_returns_before_the_database_is_written(db_engine: Engine) -> None:
    usage = UsageLog(db_engine)
    gate = threading.Lock()
    gate.acquire()
    original = usage._write

    def slow_write(records: list[UsageRecord]) -> None:
        with gate:
            original(records)

    usage._write = slow_write  # type: ignore[method-assign]
    usage.record(record(1))
    assert not usage.flush(timeout=0.05)  # the writer is stuck; record() was not
    gate.release()
    assert usage.flush(timeout=30)
    assert count_rows(db_engine) == 1
    usage.close()


def test_close_writes_everything_queued(db_url: str, db_engine: Engine) -> None:
    engine = create_database_engine(db_url)
    with UsageLog(engine) as usage:
        for n in range(300):
            usage.record(record(n))
    engine.dispose()
    assert count_rows(db_engine) == 300
    with pytest.raises(HearthError, match="closed"):
        usage.record(record(1))
    usage.close()  # idempotent


def test_summary_by_key_and_by_model(db_engine: Engine) -> None:
    usage = UsageLog(db_engine)
    usage.record(record(1, prompt_tokens=100, completion_tokens=50, cached_tokens=64))
    usage.record(record(2, model="gemma3:270m", ttft_ms=None, status="error", error="boom"))
    usage.record(record(3, key_name="app-2", status="aborted", duration_ms=300.0))
    usage.record(record(4, key_name=None, adapter="support-lora", ttft_ms=40.0))

    by_key = usage.summary(group_by="key")
    assert by_key == [
        UsageRow("app-1", 2, 1, 0, 110, 55, 64, 20.0, 100.0),
        UsageRow(None, 1, 0, 0, 10, 5, 0, 40.0, 100.0),
        UsageRow("app-2", 1, 0, 1, 10, 5, 0, 20.0, 300.0),
    ]
    assert by_key[0].total_tokens == 165

    by_model = usage.summary(group_by="model")
    assert [(row.group, row.requests, row.errors) for row in by_model] == [
        ("tiny:latest", 3, 0),
        ("gemma3:270m", 1, 1),
    ]
    assert by_model[1].mean_ttft_ms is None
    usage.close()


def test_summary_since(db_engine: Engine) -> None:
    usage = UsageLog(db_engine)
    for day in range(5):
        usage.record(record(day, created=T0 + timedelta(days=day)))
    rows = usage.summary(since=T0 + timedelta(days=3))
    assert [row.requests for row in rows] == [2]
    assert usage.summary(since=T0 + timedelta(days=9)) == []
    usage.close()


def test_summary_rejects_unknown_grouping(sqlite_engine: Engine) -> None:
    with pytest.raises(ValidationError, match="group_by"):
        UsageLog(sqlite_engine).summary(group_by="team")  # type: ignore[arg-type]


def test_records_are_utc_on_every_backend(db_engine: Engine) -> None:
    usage = UsageLog(db_engine)
    usage.record(record(1, created=datetime(2026, 6, 1, 14, 0, tzinfo=UTC)))
    usage.close()
    with db_engine.connect() as connection:
        created = connection.execute(select(UsageRecordRow.created)).scalar_one()
    assert created == datetime(2026, 6, 1, 14, 0, tzinfo=UTC)


def test_a_database_that_refuses_does_not_hang_flush(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    engine = create_database_engine(f"sqlite:///{blocker}/hearth.db")  # its folder is a file
    usage = UsageLog(engine, retry_delays=(0.0,))
    with caplog.at_level(logging.WARNING, logger="hearth.server.usage"):
        usage.record(record(1))
        assert usage.flush(timeout=30)
        usage.close()
    assert "dropped 1 usage records" in caplog.text
    engine.dispose()
