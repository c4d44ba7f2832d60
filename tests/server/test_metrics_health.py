"""/health, /ready and /metrics on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.store import Store
from tests.server.live_server import live_server, server_settings

CHAT = "tiny-chat:latest"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, tiny_chat_model: Path) -> Iterator[str]:
    home = tmp_path_factory.mktemp("metrics-home")
    settings = server_settings(
        home, HEARTH_CONTEXT="512", HEARTH_MAX_SEQS="2", HEARTH_CACHE_SEQS="0"
    )
    Store(settings).import_gguf(tiny_chat_model, "tiny-chat")
    with live_server(settings) as url:
        yield url


def metric(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix} not in metrics")


def test_health_and_ready(base_url: str) -> None:
    assert httpx.get(f"{base_url}/health").json()["status"] == "ok"
    assert httpx.get(f"{base_url}/ready").status_code == 200


def test_metrics_count_requests_tokens_and_engine_state(base_url: str) -> None:
    body = {"model": CHAT, "prompt": "hello", "max_tokens": 7, "temperature": 0}
    assert httpx.post(f"{base_url}/v1/completions", json=body, timeout=30).status_code == 200
    text = httpx.get(f"{base_url}/metrics").text
    labels = f'endpoint="/v1/completions",model="{CHAT}",status="ok"'
    assert metric(text, "hearth_requests_total", labels) >= 1
    assert metric(text, "hearth_completion_tokens_total", f'model="{CHAT}"') >= 7
    assert metric(text, "hearth_time_to_first_token_seconds_count", f'model="{CHAT}"') >= 1
    assert metric(text, "hearth_loaded_models") == 1
    assert metric(text, "hearth_kv_cells_total", f'model="{CHAT}"') > 0
    assert metric(text, "hearth_running_sequences", f'model="{CHAT}"') == 0
