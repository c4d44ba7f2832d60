"""A pull killed (SIGKILL) in the middle of its download from a Hub (tests/hub_server.py, on
loopback): nothing half-written reaches the store, and the next pull gets the exact model, which
passes `verify`.

It does not resume: huggingface_hub 2.4 downloads into a per-process ``<etag>.<uuid>.incomplete``
file (huggingface_hub PR 4228), so a new process starts from byte 0 and the dead one's file stays
in the Hugging Face cache. Resuming within one process (a dropped connection) is tested in
tests/store/test_huggingface.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.store import Store
from hearth.store.integrity import verify
from tests.hub_server import HubRepo, HubServer, _Handler, use_hub

REPO_ID = "hearth-test/tiny-gguf"
FILE = "tiny-F32.gguf"
CHUNK = 64 * 1024  # huggingface_hub's chunk (10 MB by default): a resume starts at a chunk

PULL = textwrap.dedent(
    f"""
    from huggingface_hub import constants
    constants.DOWNLOAD_CHUNK_SIZE = {CHUNK}
    from hearth.config import Settings
    from hearth.store import Store
    Store(Settings.from_env()).pull("hf.co/{REPO_ID}:F32")
    """
)


@contextmanager
def stalling_hub(hub: HubServer, after: int) -> Iterator[threading.Event]:
    """Serve ``hub``; the first GET of ``FILE`` sends ``after`` bytes, then hangs until the
    event is set (a download caught in the middle)."""
    release = threading.Event()
    stalled = {"done": False}

    class Handler(_Handler):
        def _send_body(self, path: str, data: bytes) -> None:
            if path != FILE or stalled["done"]:
                super()._send_body(path, data)
                return
            stalled["done"] = True
            self.wfile.write(data[:after])
            self.wfile.flush()
            release.wait(timeout=120)
            self.close_connection = True

    Handler.hub = hub
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield release
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def partial_size(hf_home: Path) -> int:
    return max((p.stat().st_size for p in hf_home.rglob("*.incomplete")), default=0)


def test_a_killed_pull_resumes_from_its_partial_download(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_model.read_bytes()
    hub = HubServer([HubRepo(REPO_ID, {FILE: data})])
    hf_home, home = tmp_path / "hf", tmp_path / "home"
    with stalling_hub(hub, after=3 * CHUNK) as release:
        env = {**use_hub(monkeypatch, hub.url, hf_home), "HEARTH_HOME": str(home)}
        monkeypatch.setenv("HEARTH_HOME", str(home))
        with subprocess.Popen([sys.executable, "-c", PULL], env={**os.environ, **env}) as child:
            deadline = time.monotonic() + 60
            while partial_size(hf_home) < CHUNK:
                assert child.poll() is None and time.monotonic() < deadline, "no partial file"
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        release.set()
        store = Store(Settings.from_env({"HEARTH_HOME": str(home)}))
        assert store.list() == [] and not store.blobs.digests()  # no half model or blob
        model = store.pull(f"hf.co/{REPO_ID}:F32")
    first, second = hub.gets(FILE)
    assert "range" not in first.headers and "range" not in second.headers  # see the docstring
    assert model.model_path.read_bytes() == data
    assert verify(store).ok
