"""The dashboard's data: one JSON endpoint per panel under ``/ui/api``, all behind the session.

A feature that adds a panel adds an endpoint here (or fills one in
:mod:`hearth.server.ui.extensions`); the page asks each panel's endpoint on its own, so a slow
or failing panel never blanks the others.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from hearth.engine.manager import LoadedModelStatus, ModelManager
from hearth.server.keys import KeyStore
from hearth.server.licenses_api import licenses
from hearth.server.metrics import Metrics
from hearth.server.openai.routes import chat_completions
from hearth.server.openai.schemas import ChatCompletionRequest
from hearth.server.quotas import admit
from hearth.server.ui import extensions
from hearth.server.ui.routes import admin_session
from hearth.server.ui.stats import MAX_ROWS, UsageReader, overview, window_of
from hearth.server.usage import UsageLog, UsageRow

router = APIRouter(prefix="/ui/api", dependencies=[Depends(admin_session)])

UsageGroup = Literal["key", "model", "team"]
NO_TEAM = "(no team)"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class PlaygroundRequest(BaseModel):
    model: str = Field(min_length=1, max_length=255)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    max_tokens: int = Field(default=256, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0, le=2)


@router.get("/overview")
async def overview_panel(request: Request, window: str = "24h") -> dict[str, Any]:
    span = window_of(window)
    usage: UsageLog = request.app.state.usage
    await asyncio.to_thread(usage.flush)
    now = datetime.now(UTC)
    points = await asyncio.to_thread(_reader(request).points, now - span, MAX_ROWS + 1)
    sampled = len(points) > MAX_ROWS
    return overview(points[-MAX_ROWS:], span, now, sampled=sampled)


@router.get("/usage")
async def usage_panel(
    request: Request, by: UsageGroup = "key", window: str = "24h"
) -> dict[str, Any]:
    """Totals per key, model or team (a key's team as the key store says)."""
    since = datetime.now(UTC) - window_of(window)
    usage: UsageLog = request.app.state.usage
    rows = await asyncio.to_thread(usage.summary, since, "model" if by == "model" else "key")
    if by == "team":
        keys: KeyStore = request.app.state.keys
        teams = {info.name: info.team for info in await asyncio.to_thread(keys.list)}
        rows = _by_team(rows, teams)
    return {"by": by, "rows": [_usage_dict(row) for row in rows]}


@router.get("/models")
async def models_panel(request: Request) -> dict[str, Any]:
    manager: ModelManager = request.app.state.manager
    loaded = await asyncio.to_thread(manager.loaded)
    stored = await asyncio.to_thread(manager.store.list)
    return {
        "budget_bytes": manager.budget,
        "loaded": [_loaded_dict(status) for status in loaded],
        "store": [
            {
                "name": str(model.name),
                "size": model.size,
                "modified": model.modified.isoformat(),
                "architecture": model.info.architecture,
                "quantization": model.info.quantization,
                "parameters": model.info.parameter_count,
            }
            for model in stored
        ],
    }


@router.get("/licenses")
async def licenses_panel(request: Request) -> dict[str, Any]:
    """What ``GET /api/licenses`` answers: policy, catalogue, each model's terms."""
    return await licenses(request)


@router.get("/engine")
async def engine_panel(request: Request) -> dict[str, Any]:
    """The gauges of ``/metrics`` (queue depth, running sequences, KV cells, memory...)."""
    metrics: Metrics = request.app.state.metrics
    text = (await asyncio.to_thread(metrics.render)).decode("utf-8")
    gauges = [
        {"name": sample.name, "labels": sample.labels, "value": sample.value}
        for family in text_string_to_metric_families(text)
        if family.type == "gauge"
        for sample in family.samples
        if not sample.name.endswith("_created")  # counters' creation times, not gauges
    ]
    return {"gauges": gauges}


@router.get("/quotas")
async def quotas_panel(request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(extensions.quota_panel, request)  # database reads


@router.get("/safety")
async def safety_panel(request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(extensions.safety_panel, request)  # database reads


@router.post("/chat", response_model=None)
async def playground_chat(body: PlaygroundRequest, request: Request) -> Any:
    """A streamed chat in the session key's name: the OpenAI route itself answers (scope,
    license, quotas, usage and metrics apply as to any client), so the key never reaches
    the page. /ui skips the app-wide key check, so the quota admission it makes is made here."""
    await admit(request, request.state.key)
    openai_body = ChatCompletionRequest.model_validate(
        {
            "model": body.model,
            "messages": [message.model_dump() for message in body.messages],
            "max_tokens": body.max_tokens,
            "temperature": body.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    return await chat_completions(openai_body, request)


def _reader(request: Request) -> UsageReader:
    reader: UsageReader | None = getattr(request.app.state, "ui_usage_reader", None)
    if reader is None:
        reader = UsageReader(request.app.state.database)
        request.app.state.ui_usage_reader = reader
    return reader


def _by_team(rows: list[UsageRow], teams: dict[str, str | None]) -> list[UsageRow]:
    grouped: dict[str, list[UsageRow]] = defaultdict(list)
    for row in rows:
        grouped[teams.get(row.group or "") or NO_TEAM].append(row)
    merged = [_merge(team, members) for team, members in grouped.items()]
    return sorted(merged, key=lambda row: (-row.total_tokens, row.group or ""))


def _merge(group: str, rows: list[UsageRow]) -> UsageRow:
    requests = sum(row.requests for row in rows)
    ttfts = [(row.mean_ttft_ms, row.requests) for row in rows if row.mean_ttft_ms is not None]
    ttft_weight = sum(weight for _, weight in ttfts)
    return UsageRow(
        group=group,
        requests=requests,
        errors=sum(row.errors for row in rows),
        aborted=sum(row.aborted for row in rows),
        filtered=sum(row.filtered for row in rows),
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
        cached_tokens=sum(row.cached_tokens for row in rows),
        mean_ttft_ms=sum(v * w for v, w in ttfts) / ttft_weight if ttft_weight else None,
        mean_duration_ms=sum(row.mean_duration_ms * row.requests for row in rows) / requests
        if requests
        else 0.0,
    )


def _usage_dict(row: UsageRow) -> dict[str, Any]:
    return {
        "group": row.group,
        "requests": row.requests,
        "errors": row.errors,
        "aborted": row.aborted,
        "filtered": row.filtered,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "total_tokens": row.total_tokens,
        "mean_ttft_ms": row.mean_ttft_ms,
        "mean_duration_ms": row.mean_duration_ms,
    }


def _loaded_dict(status: LoadedModelStatus) -> dict[str, Any]:
    memory = status.memory
    return {
        "name": status.name,
        "base": status.base,
        "memory": {
            "weights": memory.weights,
            "kv_cache": memory.kv_cache,
            "compute": memory.compute,
            "overhead": memory.overhead,
            "total": memory.total,
        },
        "context": status.context,
        "slots": status.slots,
        "active_requests": status.active_requests,
        "idle_seconds": status.idle_seconds,
        "expires_in": None if status.expires_in == float("inf") else status.expires_in,
        "adapters": [path.name for path in status.adapters],
    }
