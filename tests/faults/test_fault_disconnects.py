"""Clients that leave at random points of 200 streams: the engine ends idle (no sequence left
running or waiting, no KV cell held) and the usage log has exactly one row per request."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from hearth.config import Settings
from hearth.db import open_database
from hearth.engine.engine import EngineStats
from hearth.engine.manager import ModelManager
from hearth.server.usage import UsageRecordRow
from hearth.store import Store
from tests.server.live_server import live_server, server_settings

STREAMS = 200
AT_ONCE = 12
MAX_TOKENS = 48
NO_EOS = {"2": -100}


async def one_stream(client: httpx.AsyncClient, leave_after: int | None) -> bool:
    """A streamed completion read for ``leave_after`` lines (None: to the end), then dropped.
    True if the client saw the end of the stream."""
    body = {
        "model": "tiny",
        "prompt": "go",
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "logit_bias": NO_EOS,
    }
    async with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200
        lines = 0
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return True
            lines += 1
            if leave_after is not None and lines >= leave_after:
                return False  # leaving the block closes the connection mid-stream
    return False


async def many_streams(base: str, plan: list[int | None]) -> list[bool]:
    gate = asyncio.Semaphore(AT_ONCE)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def run(leave_after: int | None) -> bool:
            async with gate:
                return await one_stream(client, leave_after)

        return await asyncio.gather(*(run(step) for step in plan))


def idle(manager: ModelManager, timeout: float = 30) -> EngineStats:
    deadline = time.monotonic() + timeout
    while True:
        [(_, stats)] = manager.engine_stats()
        quiet = stats.running == 0 and stats.waiting == 0 and stats.kv_cells_used == 0
        if quiet or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def test_random_disconnects_leak_nothing(hearth_home: Path, tiny_model: Path) -> None:
    # No prefix cache: every KV cell still used afterwards would be a leak.
    settings = server_settings(hearth_home, HEARTH_CACHE_SEQS="0", HEARTH_MAX_SEQS="8")
    Store(settings).import_gguf(tiny_model, "tiny")
    chooser = random.Random(1125)
    plan = [None if chooser.random() < 0.3 else chooser.randrange(0, 30) for _ in range(STREAMS)]
    with ModelManager(Store(settings), settings) as manager, live_server(settings, manager) as base:
        finished = asyncio.run(many_streams(base, plan))
        stats = idle(manager)
    assert (stats.running, stats.waiting, stats.kv_cells_used) == (0, 0, 0)
    rows = usage_rows(settings)
    assert len(rows) == STREAMS
    assert {status for status, _ in rows} <= {"ok", "aborted"}
    assert all(tokens == MAX_TOKENS for status, tokens in rows if status == "ok")
    assert all(tokens <= MAX_TOKENS for _, tokens in rows)
    assert sum(status == "ok" for status, _ in rows) >= sum(finished)
    assert sum(status == "aborted" for status, _ in rows) > 0


def usage_rows(settings: Settings) -> list[tuple[str, int]]:
    database = open_database(settings)
    try:
        with database.connect() as connection:
            query = select(UsageRecordRow.status, UsageRecordRow.completion_tokens)
            return [(status, tokens) for status, tokens in connection.execute(query)]
    finally:
        database.dispose()
