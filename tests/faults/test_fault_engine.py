"""The engine failing under the server: a step that raises (injected into the loaded model's
runner, as the runner raises when llama_decode fails) ends the requests in flight with a clear
error, frees their KV cells, and the same engine serves the next request; readiness stays
green, because the engine thread lives on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from hearth.engine.manager import ModelManager
from hearth.engine.runner import LlamaRunner
from hearth.engine.scheduler import SchedulerOutput
from hearth.errors import EngineError
from hearth.store import Store
from tests.faults.test_fault_disconnects import idle
from tests.server.live_server import live_server, server_settings

NO_EOS = {"2": -100}
BODY = {"model": "tiny", "prompt": "go", "max_tokens": 400, "logit_bias": NO_EOS}


def test_a_failing_step_fails_its_requests_and_the_engine_goes_on(
    hearth_home: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = server_settings(hearth_home, HEARTH_CACHE_SEQS="0")
    Store(settings).import_gguf(tiny_model, "tiny")
    real_execute = LlamaRunner.execute
    armed = threading.Event()

    def execute(self: LlamaRunner, output: SchedulerOutput) -> dict[int, list[int]]:
        if armed.is_set():
            armed.clear()
            raise EngineError("injected fault: llama_decode failed with status -1")
        return real_execute(self, output)

    monkeypatch.setattr(LlamaRunner, "execute", execute)
    with (
        ModelManager(Store(settings), settings) as manager,
        live_server(settings, manager) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        assert client.post("/v1/completions", json={**BODY, "max_tokens": 2}).status_code == 200
        results: list[httpx.Response] = []
        in_flight = [
            threading.Thread(
                target=lambda: results.append(client.post("/v1/completions", json=BODY))
            )
            for _ in range(3)
        ]
        for thread in in_flight:
            thread.start()
        time.sleep(0.3)  # they are decoding
        armed.set()
        for thread in in_flight:
            thread.join(timeout=60)
        assert [r.status_code for r in results] == [500] * 3
        for failed in results:
            error = failed.json()["error"]
            assert error["type"] == "server_error"
            assert "injected fault" in error["message"]
        assert client.get("/ready").status_code == 200
        stats = idle(manager)
        assert (stats.running, stats.waiting, stats.kv_cells_used) == (0, 0, 0)
        again = client.post("/v1/completions", json={**BODY, "max_tokens": 5})
        assert again.status_code == 200
        assert again.json()["usage"]["completion_tokens"] == 5
