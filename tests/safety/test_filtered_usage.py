"""An answer a safety rule stops is recorded in the usage log with status ``filtered`` and the
tokens the engine made: a real server on loopback, the tiny byte-vocabulary model (one token
per character), its answer forced by a JSON schema ``const`` so the blocklisted word comes at
a known token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from hearth.config import Settings
from hearth.db import Sessions, open_database
from hearth.engine.manager import ModelManager
from hearth.server.ui.stats import UsageReader, overview
from hearth.server.usage import UsageLog, UsageRecordRow
from hearth.store import Store
from tests.server.live_server import live_server

MODEL = "tiny-chat"
SAFETY_TOML = """
[safety.default]
blocklist = ["forbidden"]
"""
ANSWER = "the answer is: forbidden"
FORCED = f'"{ANSWER}"'  # the JSON string the model must write: 26 characters, 26 tokens
LONG = ANSWER + " and then some more words" * 4


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Settings:
    home = tmp_path_factory.mktemp("filtered-home")
    (home / "hearth.toml").write_text(SAFETY_TOML)
    env = {
        "HEARTH_HOME": str(home),
        "HEARTH_CONTEXT": "1024",
        "HEARTH_MAX_SEQS": "2",
        "HEARTH_CACHE_SEQS": "0",
        "HEARTH_THREADS": "2",
    }
    settings = Settings.from_env(env)
    Store(settings).import_gguf(tiny_chat_model, MODEL)
    return settings


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with ModelManager(Store(settings), settings) as manager, live_server(settings, manager) as url:
        yield url


def forced(text: str) -> Any:
    schema = {"type": "string", "const": text}
    return {"type": "json_schema", "json_schema": {"name": "forced", "schema": schema}}


def ask(url: str, text: str, max_tokens: int, *, stream: bool) -> tuple[str, str, int]:
    """(content, finish reason, completion tokens the API reported) of one chat request."""
    chat = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    with chat:
        request: dict[str, Any] = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "say it"}],
            "response_format": forced(text),
            "max_tokens": max_tokens,
        }
        if not stream:
            answer = chat.chat.completions.create(**request)
            assert answer.usage is not None
            choice = answer.choices[0]
            return (
                choice.message.content or "",
                choice.finish_reason,
                answer.usage.completion_tokens,
            )
        chunks = list(
            chat.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
        )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    usage = chunks[-1].usage
    assert usage is not None and reasons.count("content_filter") == 1
    return content, reasons[-1] or "", usage.completion_tokens


def usage_rows(settings: Settings, count: int) -> list[UsageRecordRow]:
    """The usage log's rows once ``count`` have been written (the writer batches)."""
    engine = open_database(settings)
    sessions = Sessions(engine, UsageRecordRow.__table__)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 30
        while True:
            with sessions.begin() as session:  # creates the table if nothing was written yet
                rows = list(session.scalars(select(UsageRecordRow).order_by(UsageRecordRow.id)))
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        engine.dispose()


def test_a_filtered_answer_is_a_filtered_usage_row_with_the_tokens_made(
    settings: Settings, base_url: str
) -> None:
    # max_tokens stops the model on the closing quote, the token that settles the match:
    # the engine has made exactly 26 tokens whatever the timing, so they can be asserted
    streamed = ask(base_url, ANSWER, len(FORCED), stream=True)
    whole = ask(base_url, ANSWER, len(FORCED), stream=False)
    assert streamed == ('"the answer is: ', "content_filter", 26)
    assert whole == ('"the answer is: ', "content_filter", 26)
    # mid-stream: the rule fires at token 26 of 127 (the space after the word); the engine
    # is stopped soon after, so the count is bounded, not exact
    content, reason, reported = ask(base_url, LONG, 200, stream=True)
    assert (content, reason) == ('"the answer is: ', "content_filter")
    assert len(FORCED) <= reported < len(LONG) + 2

    rows = usage_rows(settings, 3)
    assert [(r.status, r.completion_tokens) for r in rows[:2]] == [("filtered", 26)] * 2
    assert rows[2].status == "filtered"
    assert len(FORCED) <= rows[2].completion_tokens <= reported  # counted as it stopped
    assert len(rows) == 3

    engine = open_database(settings)
    try:
        with UsageLog(engine) as log:
            (summary,) = log.summary(group_by="model")  # what `hearth usage` shows
        points = UsageReader(engine).points(datetime.now(UTC) - timedelta(hours=1))
    finally:
        engine.dispose()
    assert (summary.requests, summary.filtered, summary.aborted, summary.errors) == (3, 3, 0, 0)
    now = datetime.now(UTC)
    totals = overview(points, timedelta(hours=1), now, sampled=False)["totals"]  # the dashboard
    assert (totals["filtered"], totals["aborted"]) == (3, 0)
