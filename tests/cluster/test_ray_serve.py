"""Hearth on Ray Serve, end to end on a real two-node Ray cluster (see conftest.py): requests
through the ingress, two replicas sharing the load, a model pulled by the second node from
the head, `hearth cluster status`, and a replica killed under load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from hearth.config import Settings
from hearth.db import create_database_engine
from hearth.governance.limits import Limits
from hearth.server.keys import KeyStore
from hearth.server.usage import UsageRecordRow
from hearth.store import Store
from tests.cluster.conftest import MODEL, HearthCluster

pytestmark = pytest.mark.cluster
STREAM_TIMEOUT = 120.0


@dataclass
class StreamResult:
    status: int
    replica: str | None = None
    attempts: int = 0
    outputs: int = 0  # output events: one token each
    usage: dict[str, int] | None = None
    done: bool = False
    finish_reason: str | None = None
    error: str | None = None


async def stream_completion(
    client: httpx.AsyncClient,
    prompt: str,
    max_tokens: int,
    started: asyncio.Queue[str] | None = None,
) -> StreamResult:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with client.stream("POST", "/v1/completions", json=body) as response:
        result = StreamResult(
            status=response.status_code,
            replica=response.headers.get("x-hearth-replica"),
            attempts=int(response.headers.get("x-hearth-attempts", "0")),
        )
        if started is not None and result.replica is not None:
            started.put_nowait(result.replica)
        async for line in response.aiter_lines():
            _read_event(line, result)
    return result


def _read_event(line: str, result: StreamResult) -> None:
    if not line.startswith("data: "):
        return
    data = line.removeprefix("data: ")
    if data == "[DONE]":
        result.done = True
        return
    event: dict[str, Any] = json.loads(data)
    if "error" in event:
        result.error = event["error"]["message"]
        return
    for choice in event["choices"]:
        result.outputs += 1
        result.finish_reason = choice["finish_reason"] or result.finish_reason
    if event.get("usage"):
        result.usage = event["usage"]


async def run_streams(url: str, prompts: Sequence[str], max_tokens: int) -> list[StreamResult]:
    async with httpx.AsyncClient(base_url=url, timeout=STREAM_TIMEOUT) as client:
        tasks = [stream_completion(client, prompt, max_tokens) for prompt in prompts]
        return await asyncio.gather(*tasks)


def usage_rows(database_url: str, after_id: int, count: int) -> list[UsageRecordRow]:
    """The usage rows written after ``after_id``, once there are ``count`` of them (replicas
    write theirs from a background thread, a moment after the response)."""
    engine = create_engine(database_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(UsageRecordRow).where(UsageRecordRow.id > after_id)
                ).all()
            if len(rows) >= count or time.monotonic() > deadline:
                return [UsageRecordRow(**row._mapping) for row in rows]
            time.sleep(0.5)
    finally:
        engine.dispose()


def last_usage_id(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.max(UsageRecordRow.id))).scalar() or 0)
    finally:
        engine.dispose()


def test_two_replicas_share_concurrent_streams_and_usage_adds_up(
    hearth_cluster: HearthCluster,
) -> None:
    before = last_usage_id(hearth_cluster.database_url)
    prompts = [f"request {i}: {'abcdefgh'[i % 8] * (3 + i)}" for i in range(10)]

    results = asyncio.run(run_streams(hearth_cluster.url, prompts, max_tokens=12))

    assert [r.status for r in results] == [200] * len(prompts)
    assert all(r.done and r.error is None and r.usage is not None for r in results)
    assert len({r.replica for r in results}) == 2  # both replicas answered
    for result in results:  # one output event per generated token, as on one machine
        assert result.usage is not None
        assert result.outputs == result.usage["completion_tokens"]
    rows = usage_rows(hearth_cluster.database_url, before, len(prompts))
    assert len(rows) == len(prompts)
    assert {row.status for row in rows} == {"ok"}
    assert sum(row.completion_tokens for row in rows) == sum(
        r.usage["completion_tokens"] for r in results if r.usage
    )
    assert sum(row.prompt_tokens for row in rows) == sum(
        r.usage["prompt_tokens"] for r in results if r.usage
    )


def test_ollama_stream_is_relayed_line_by_line(hearth_cluster: HearthCluster) -> None:
    body = {"model": MODEL, "prompt": "hello", "options": {"num_predict": 6, "temperature": 0}}
    response = httpx.post(f"{hearth_cluster.url}/api/generate", json=body, timeout=60)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[-1]["done"] is True
    assert lines[-1]["eval_count"] == len(lines)  # one line per token


def test_unknown_model_is_refused_by_the_ingress(hearth_cluster: HearthCluster) -> None:
    body = {"model": "not-served", "prompt": "hi", "max_tokens": 2}
    response = httpx.post(f"{hearth_cluster.url}/v1/completions", json=body, timeout=30)

    assert response.status_code == 404
    assert "not served by this cluster" in response.json()["error"]["message"]


def test_second_node_pulled_the_model_into_its_own_store(hearth_cluster: HearthCluster) -> None:
    status = hearth_cluster.status()

    assert len([n for n in status["nodes"] if n["alive"]]) == 2
    assert len({r["node_id"] for r in status["replicas"]}) == 2  # one replica per node
    worker = Store(Settings.from_env({"HEARTH_HOME": str(hearth_cluster.worker_home)}))
    assert worker.resolve(MODEL).manifest_digest == hearth_cluster.model_id  # same model ID
    (deployment,) = [d for d in status["deployments"] if d["name"] == "model-tiny"]
    assert deployment["replicas"] == 2


def test_cluster_status_command_shows_nodes_and_replicas(hearth_cluster: HearthCluster) -> None:
    code = (
        "from hearth.cli.cluster_cmds import cluster_status\n"
        f"cluster_status(address={hearth_cluster.ray.address!r})\n"
    )
    env = {**os.environ, "COLUMNS": "250", "HEARTH_HOME": str(hearth_cluster.head_home)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr[-3000:]
    replicas = {r["replica"] for r in hearth_cluster.ready_replicas()}
    for expected in ("Nodes", "head", "worker", "model-tiny", "HEALTHY", "Replicas", *replicas):
        assert expected in result.stdout, result.stdout


def test_killed_replica_loses_no_request_that_had_not_streamed(
    hearth_cluster: HearthCluster,
) -> None:
    before = last_usage_id(hearth_cluster.database_url)
    pids = {r["replica"]: r["pid"] for r in hearth_cluster.ready_replicas()}
    prompts = [f"failover {i}: {'xyzw'[i % 4] * (5 + i)}" for i in range(12)]

    async def scenario() -> tuple[str, list[StreamResult]]:
        started: asyncio.Queue[str] = asyncio.Queue()
        async with httpx.AsyncClient(base_url=hearth_cluster.url, timeout=STREAM_TIMEOUT) as c:
            tasks = [
                asyncio.create_task(stream_completion(c, prompt, 400, started))
                for prompt in prompts
            ]
            victim = await asyncio.wait_for(started.get(), STREAM_TIMEOUT)
            # Frozen at once, so the requests routed to it are still there, half of them
            # streaming and the rest waiting; then killed mid-load.
            os.kill(pids[victim], signal.SIGSTOP)
            await asyncio.sleep(1)
            os.kill(pids[victim], signal.SIGKILL)
            results = await asyncio.wait_for(asyncio.gather(*tasks), STREAM_TIMEOUT)
        return victim, results

    victim, results = asyncio.run(scenario())

    assert [r.status for r in results] == [200] * len(prompts)  # nothing lost, nothing hung
    cut = [r for r in results if r.error is not None]
    whole = [r for r in results if r.error is None]
    assert all(r.replica == victim and victim in (r.error or "") for r in cut)
    assert len(cut) <= 2  # at most the victim's decoding sequences (HEARTH_MAX_SEQS=2)
    assert all(r.done and r.usage is not None for r in whole)
    # Whatever waited on the victim was answered by another replica (retried before its first
    # byte): no whole answer can come from the dead one.
    assert all(r.replica != victim for r in whole)
    rows = usage_rows(hearth_cluster.database_url, before, len(prompts))
    assert len(rows) == len(prompts)
    error_rows = [row for row in rows if row.status == "error"]
    assert sorted(row.completion_tokens for row in error_rows) == sorted(r.outputs for r in cut)
    assert sum(row.completion_tokens for row in rows if row.status == "ok") == sum(
        r.usage["completion_tokens"] for r in whole if r.usage
    )
    hearth_cluster.wait_ready(2, exclude=frozenset({victim}))  # Ray replaced the replica


def test_quotas_hold_across_replicas(hearth_cluster: HearthCluster) -> None:
    """A key limited to 4 requests a minute gets 4 answers in all, not 4 per replica: the
    replicas count on the shared quota counters (HEARTH_SHARED_QUOTAS, set by the cluster).
    Last in the module: once a key exists, every request needs one."""
    hearth_cluster.wait_ready(2)  # both asked: a replica killed earlier has been replaced
    engine = create_database_engine(hearth_cluster.database_url)
    try:
        key = KeyStore(engine).create("app", models=None, expires=None, limits=Limits(rpm=4))
    finally:
        engine.dispose()
    headers = {"Authorization": f"Bearer {key.secret}"}

    async def send(client: httpx.AsyncClient, i: int) -> httpx.Response:
        body = {"model": MODEL, "prompt": f"quota {i} " + "q" * i, "max_tokens": 2}
        return await client.post("/v1/completions", json=body, headers=headers)

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=hearth_cluster.url, timeout=60) as client:
            return await asyncio.gather(*(send(client, i) for i in range(10)))

    responses = asyncio.run(scenario())

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 4 + [429] * 6
    assert len({r.headers["x-hearth-replica"] for r in responses}) == 2  # both replicas asked
