"""A small Hugging Face Hub on 127.0.0.1 for the real ``huggingface_hub`` client.

It serves what ``HfApi.model_info`` and ``hf_hub_download`` request (see huggingface_hub's
hf_api.py and file_download.py):

- ``GET /api/models/{repo}[/revision/{rev}]``: ``id``, ``sha``, ``siblings`` (with ``size``,
  ``blobId`` and ``lfs`` when ``?blobs=True``);
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the git blob
  SHA-1, or for LFS files the SHA-256, also as ``X-Linked-Etag``), ``X-Linked-Size``,
  ``Content-Length``, and ``Range: bytes=N-`` answered with 206;
- errors with ``X-Error-Code`` (``RepoNotFound``, ``EntryNotFound``, ``GatedRepo``) as the Hub.

Faults for tests: ``drop_after[path] = n`` sends n bytes of the first GET of ``path`` and
closes the connection; ``corrupt`` paths are served with one byte flipped (headers unchanged).
Every request is recorded with its headers. Repository ids match without case, as on the Hub.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    commit: str = ""

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1(self.repo_id.encode())
            for path, data in sorted(self.files.items()):
                digest.update(path.encode() + data)
            self.commit = digest.hexdigest()

    @staticmethod
    def from_folder(repo_id: str, folder: Path, *, gated: bool = False) -> HubRepo:
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        return HubRepo(repo_id, files, gated=gated)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class HubServer:
    repos: list[HubRepo]
    token: str | None = None  # the token gated repos accept
    drop_after: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def repo(self, repo_id: str) -> HubRepo | None:
        return next((r for r in self.repos if r.repo_id.lower() == repo_id.lower()), None)

    def gets(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)]


def file_headers(repo: HubRepo, path: str) -> dict[str, str]:
    data = repo.files[path]
    headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
    if path.endswith(LFS_SUFFIXES):
        sha256 = hashlib.sha256(data).hexdigest()
        headers |= {"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"'}
        headers["X-Linked-Size"] = str(len(data))
    else:
        headers["ETag"] = f'"{git_blob_id(data)}"'
    return headers


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sibling(path: str, data: bytes, with_metadata: bool) -> dict[str, object]:
    entry: dict[str, object] = {"rfilename": path}
    if with_metadata:
        entry |= {"size": len(data), "blobId": git_blob_id(data)}
        if path.endswith(LFS_SUFFIXES):
            lfs = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            entry["lfs"] = lfs | {"pointerSize": 134}
    return entry


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        hub = self.hub
        headers = {key.lower(): value for key, value in self.headers.items()}
        hub.requests.append(Recorded(self.command, self.path, headers))
        url = urlsplit(self.path)
        path = unquote(url.path)
        if api := _API_RE.match(path):
            self._model_info(api["repo"], "blobs" in parse_qs(url.query))
        elif resolve := _RESOLVE_RE.match(path):
            self._resolve(resolve["repo"], resolve["rev"], resolve["path"], body=body)
        else:
            self._error(404, "RepoNotFound", "no such route")

    def _model_info(self, repo_id: str, with_metadata: bool) -> None:
        repo = self.hub.repo(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        siblings = [sibling(p, d, with_metadata) for p, d in sorted(repo.files.items())]
        info = {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": repo.commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "siblings": siblings,
        }
        data = json.dumps(info).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _resolve(self, repo_id: str, revision: str, path: str, *, body: bool) -> None:
        repo = self.hub.repo(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if revision not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        if repo.gated and self.headers.get("Authorization") != f"Bearer {self.hub.token}":
            return self._error(401, "GatedRepo", "Access to model is restricted")
        if path not in repo.files:
            return self._error(404, "EntryNotFound", "Entry not found")
        data = repo.files[path]
        if path in self.hub.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = _range_start(self.headers.get("Range"))
        self.send_response(206 if start else 200)
        for key, value in file_headers(repo, path).items():
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            self._send_body(path, data[start:])

    def _send_body(self, path: str, data: bytes) -> None:
        cut = self.hub.drop_after.pop(path, None)
        if cut is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[:cut])
        self.wfile.flush()
        self.close_connection = True  # the client sees the body end early

    def _error(self, status: int, code: str, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match[1]) if match else 0


@contextmanager
def running(hub: HubServer) -> Iterator[HubServer]:
    """Serve ``hub`` on a random loopback port until the block ends."""
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def use_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> dict[str, str]:
    """Point huggingface_hub at ``endpoint`` with its cache in ``hf_home``, in this process
    and in child processes; returns the environment for a child.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import, so its
    module constants are patched beside the environment. HF_TOKEN is read at each call.
    """
    from huggingface_hub import constants

    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return env


def set_offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
