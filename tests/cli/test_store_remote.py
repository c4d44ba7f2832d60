"""Store commands through a running server: `hearth list/show/cp/create/rm/pull` work on the
server's store (HEARTH_HOST), not on the local HEARTH_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.devtools.tiny_gguf import write_tiny_lora
from hearth.store import MediaType, Store
from tests.cli.process import run_hearth
from tests.server.live_server import live_server, server_settings


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[Store, str]]:
    settings = server_settings(tmp_path_factory.mktemp("server-home"))
    store = Store(settings)
    store.import_gguf(tiny_model, "tiny")
    with live_server(settings) as url:
        yield store, url.removeprefix("http://")


def test_commands_use_the_servers_store(
    server: tuple[Store, str], tmp_path: Path, tiny_model: Path
) -> None:
    store, host = server
    local_home = tmp_path / "empty-home"

    def hearth(*args: str) -> str:
        result = run_hearth(local_home, *args, env={"HEARTH_HOST": host})
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "tiny:latest" in hearth("list")
    shown = hearth("show", "tiny")
    assert "architecture    llama" in shown and "license         apache-2.0" in shown
    hearth("cp", "tiny", "tiny-copy")
    assert store.resolve("tiny-copy").manifest_digest == store.resolve("tiny").manifest_digest

    (tmp_path / "weights.gguf").write_bytes(tiny_model.read_bytes())
    write_tiny_lora(tmp_path / "lora.gguf")
    (tmp_path / "Modelfile").write_text(
        "FROM ./weights.gguf\nADAPTER ./lora.gguf\nSYSTEM Remote.\nPARAMETER top_k 7\n"
    )
    hearth("create", "remote-bot", "-f", str(tmp_path / "Modelfile"))
    bot = store.resolve("remote-bot")
    assert bot.manifest.layer(MediaType.ADAPTER) is not None
    assert store.profile(bot).system == "Remote."
    assert "top_k 7" in hearth("show", "remote-bot")

    hearth("rm", "tiny-copy", "remote-bot")
    assert [str(m.name) for m in store.list()] == ["tiny:latest"]
    assert not (local_home / "manifests").exists()  # nothing happened locally


def test_errors_through_the_server_are_one_line(server: tuple[Store, str], tmp_path: Path) -> None:
    _, host = server
    for args, message in [
        (("show", "tinny"), "model 'tinny' not found (did you mean tiny:latest?)"),
        (("rm", "nothing"), "model 'nothing' not found"),  # with a guess
        (("pull", "nope:1b"), "model 'nope:1b' not found"),
    ]:
        result = run_hearth(tmp_path, *args, env={"HEARTH_HOST": host})
        assert result.returncode == 1, args
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {message}"), line
