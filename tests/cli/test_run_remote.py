"""`hearth run` and `hearth ps` against a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.store import Store
from tests.cli.process import run_hearth
from tests.server.live_server import live_server, server_settings

pytestmark = pytest.mark.gemma
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    home = tmp_path_factory.mktemp("remote-home")
    settings = server_settings(home, HEARTH_CACHE_SEQS="0")
    Store(settings).pull("gemma3:270m")
    with live_server(settings) as url:
        yield home, url.removeprefix("http://")


def test_run_uses_the_running_server_and_leaves_the_model_loaded(server: tuple[Path, str]) -> None:
    home, host = server
    model = Store(server_settings(home)).resolve("gemma3:270m")
    with LLM(model.model_path, EngineConfig(context=1024, max_seqs=1, threads=2)) as llm:
        # As in-process: the prompt is one user turn through the chat template.
        turn = [ChatMessage("user", PROMPT)]
        expected = llm.chat(turn, SamplingParams(temperature=0, max_tokens=12)).text()
    args = ("run", "gemma3:270m", PROMPT, "--temperature", "0", "--max-tokens", "12")
    result = run_hearth(home, *args, env={"HEARTH_HOST": host})
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"
    listed = run_hearth(home, "ps", env={"HEARTH_HOST": host})
    assert listed.returncode == 0, listed.stderr
    assert "gemma3:270m" in listed.stdout


def test_ps_without_a_server_is_one_clear_line(hearth_home: Path) -> None:
    result = run_hearth(hearth_home, "ps", env={"HEARTH_HOST": "127.0.0.1:9"})
    assert result.returncode == 1
    assert "no Hearth server answers on 127.0.0.1:9" in result.stderr
    assert result.stderr.count("\n") == 1
