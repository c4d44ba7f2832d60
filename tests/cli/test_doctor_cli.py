"""`hearth doctor` in a real process: the real machine, llama.cpp build, smoke test, store and
port; and a port taken by something that is not Hearth."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from hearth.config import Settings
from hearth.store import Store
from tests.cli.process import run_hearth


def test_doctor_reports_every_check(tmp_path: Path, tiny_model: Path) -> None:
    Store(Settings.from_env({"HEARTH_HOME": str(tmp_path)})).import_gguf(tiny_model, "tiny:1")
    with socket.socket() as probe:  # a free port, so the port check sees nothing listening
        probe.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{probe.getsockname()[1]}"
    done = run_hearth(tmp_path, "doctor", env={"HEARTH_HOST": host}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("cpu cores", "memory", "gpu", "cpu features", "llama.cpp build", "smoke test"):
        assert name in done.stdout
    assert "one-token decode works" in done.stdout
    assert "tiny:1" in done.stdout and f"{host} is free" in done.stdout


def test_doctor_fails_when_the_port_is_taken_by_something_else(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    host = f"127.0.0.1:{listener.getsockname()[1]}"

    def answer_garbage() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.0\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        done = run_hearth(tmp_path, "doctor", "--no-smoke", env={"HEARTH_HOST": host})
    finally:
        listener.close()
    assert done.returncode == 1
    assert "not Hearth" in done.stdout and "HEARTH_HOST" in done.stdout


def test_doctor_names_a_model_that_does_not_fit(tmp_path: Path, tiny_model: Path) -> None:
    Store(Settings.from_env({"HEARTH_HOME": str(tmp_path)})).import_gguf(tiny_model, "tiny:1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{probe.getsockname()[1]}"
    env = {"HEARTH_HOST": host, "HEARTH_MAX_MEMORY": "1M"}
    done = run_hearth(tmp_path, "doctor", "--no-smoke", env=env)
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not a failure
    assert "warn" in done.stdout and "tiny:1" in done.stdout
    assert "hearth plan" in done.stdout
