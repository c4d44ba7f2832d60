"""A `hearth serve` process on loopback, for benchmarks: a free port, start, wait until ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, process: subprocess.Popen[bytes], path: str = "/health", timeout: float = 120
) -> None:
    """Until ``url + path`` answers below 500; raises if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start in {timeout:.0f} s")


def start_hearth(
    home: Path, port: int, settings: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`hearth serve` with HEARTH_HOME=home on 127.0.0.1:port; ``settings`` add HEARTH_* vars."""
    env = {
        **os.environ,
        "HEARTH_HOME": str(home),
        "HEARTH_HOST": f"127.0.0.1:{port}",
        **(settings or {}),
    }
    hearth = Path(sys.executable).with_name("hearth")
    return subprocess.Popen([str(hearth), "serve"], env=env, stderr=subprocess.DEVNULL)
