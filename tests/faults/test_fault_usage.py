"""Usage-log faults: the database locked by another process while the server answers, and a
disk that is full when usage rows are written. Requests never wait for the database; the
background writer (hearth/writer.py) holds the rows and writes every one once it can."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.db import open_database
from hearth.server.usage import UsageLog, UsageRecord
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

NO_EOS = {"2": -100}  # every answer runs to max_tokens: exact token counts
LOCK_SECONDS = 3.0


def usage_totals(settings: Settings) -> tuple[int, int]:
    database = open_database(settings)
    try:
        with UsageLog(database) as log:
            rows = log.summary(group_by="model")
        return sum(r.requests for r in rows), sum(r.completion_tokens for r in rows)
    finally:
        database.dispose()


def test_a_locked_database_delays_usage_rows_not_requests(
    hearth_home: Path, tiny_chat_model: Path
) -> None:
    settings = server_settings(hearth_home)
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    open_database(settings).dispose()  # tables exist before the lock is taken
    body = {"model": "tiny-chat", "prompt": "hi", "max_tokens": 3, "logit_bias": NO_EOS}
    with live_server(settings) as base, httpx.Client(base_url=base, timeout=60) as client:
        assert client.post("/v1/completions", json=body).status_code == 200  # warm
        # Another process's exclusive lock: every write waits (busy timeout) until it ends.
        locker = sqlite3.connect(hearth_home / "hearth.db", timeout=30)
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        try:
            for _ in range(20):  # answered while the lock is held, by construction
                assert client.post("/v1/completions", json=body).status_code == 200
            time.sleep(max(0.0, started + LOCK_SECONDS - time.monotonic()))
        finally:
            locker.commit()
            locker.close()
    assert usage_totals(settings) == (21, 21 * 3)  # and no row was lost


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte (unbuffered writes until ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_usage_rows_wait_out_a_full_disk(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env({"HEARTH_HOME": str(small_disk / "home")})
    database = open_database(settings)
    records = [
        UsageRecord(request_id=f"r{i}", key_name=None, model="m", endpoint="/x", prompt_tokens=i)
        for i in range(200)
    ]
    try:
        with UsageLog(database) as log:
            log.record(records[0])
            assert log.flush(timeout=30)  # the table and its first pages exist
            filler = fill(small_disk)
            for record in records[1:]:
                log.record(record)
            time.sleep(1.2)  # past the 0.5 s batching window: the writer meets ENOSPC, retries
            filler.unlink()  # space comes back
            assert log.flush(timeout=30)
            rows = log.summary(group_by="model")
    finally:
        database.dispose()
    assert "usage records failed; retrying" in caplog.text  # the disk was full for it
    assert [(r.requests, r.prompt_tokens) for r in rows] == [(200, sum(range(200)))]
    with sqlite3.connect(small_disk / "home" / "hearth.db") as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
