"""Registry peers for tests: Debian's real ``docker-registry`` (distribution 2.8) on a loopback
port, and a small HTTP front that forwards to it while logging requests and misbehaving on
purpose (bearer-token auth, a dropped connection, a flipped byte).

``docker-registry`` comes from the Debian package of that name (installed by
``scripts/install_system_deps.sh``); htpasswd files are written with ``htpasswd -B`` from
``apache2-utils`` (the registry only accepts bcrypt hashes).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REGISTRY_BIN = "/usr/bin/docker-registry"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def registry_available() -> bool:
    return Path(REGISTRY_BIN).is_file()


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (``htpasswd`` from apache2-utils)."""
    result = subprocess.run(
        ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
    )
    return result.stdout.strip() + "\n"


@dataclass
class RegistryProcess:
    host: str  # "127.0.0.1:<port>", as a model name's host
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def docker_registry(root: Path, htpasswd: str | None = None) -> Iterator[RegistryProcess]:
    """A real registry storing under ``root``; with ``htpasswd`` (file content) basic auth."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret"},
    }
    if htpasswd is not None:
        (root / "htpasswd").write_text(htpasswd)
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}}
    # JSON is YAML, so no YAML writer is needed.
    (root / "config.yml").write_text(json.dumps(config))
    log = root / "registry.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=sink, stderr=sink
        )
    registry = RegistryProcess(f"127.0.0.1:{port}", process, log)
    try:
        _wait_until_up(registry)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root / "data", ignore_errors=True)


def _wait_until_up(registry: RegistryProcess) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {registry.log_text()[-2000:]}")
        try:
            httpx.get(f"{registry.url}/v2/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not start")


# A misbehaving front -------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FrontBehaviour:
    """What the front does besides forwarding; tests flip these between calls."""

    token: str | None = None  # bearer token the front requires (issued by the token server)
    realm: str = ""  # token server URL put in the challenge
    drop_blob_after: int | None = None  # close the first large blob GET after this many bytes
    flip_blob_byte: bool = False  # flip one byte of every blob GET body
    requests: list[LoggedRequest] = field(default_factory=list)


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: str
    behaviour: FrontBehaviour

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.behaviour.requests.append(LoggedRequest(self.command, self.path, headers))
        length = int(headers.get("content-length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        if not self._authorised(headers):
            return
        # Host goes through: the registry builds upload Locations from it (back to the front).
        upstream_headers = {
            k: v
            for k, v in headers.items()
            if k == "host" or (k not in HOP_BY_HOP and k != "authorization")
        }
        response = httpx.request(
            self.command,
            f"{self.upstream}{self.path}",
            headers=upstream_headers,
            content=body,
            timeout=30,
        )
        content = response.content
        is_blob_get = self.command == "GET" and "/blobs/sha256:" in self.path
        if is_blob_get and self.behaviour.flip_blob_byte and content:
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        drop = self.behaviour.drop_blob_after
        if is_blob_get and drop is not None and len(content) > drop:
            self.behaviour.drop_blob_after = None  # only once
            self._send(response, content, send_only=drop)
            self.close_connection = True
            return
        self._send(response, content)

    def _authorised(self, headers: dict[str, str]) -> bool:
        token = self.behaviour.token
        if token is None or headers.get("authorization") == f"Bearer {token}":
            return True
        challenge = (
            f'Bearer realm="{self.behaviour.realm}",service="front",'
            f'scope="repository:{_repository(self.path)}:pull,push"'
        )
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "token"}]}).encode()
        self.send_response(401)
        self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return False

    def _send(self, response: httpx.Response, content: bytes, send_only: int | None = None) -> None:
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                self.send_header(key, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.headers.get("content-length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content if send_only is None else content[:send_only])
        self.wfile.flush()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def _repository(path: str) -> str:
    parts = urllib.parse.urlsplit(path).path.split("/")
    return "/".join(parts[2:4]) if len(parts) > 4 else ""


@contextmanager
def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def registry_front(upstream: str, behaviour: FrontBehaviour) -> Iterator[str]:
    """A front forwarding to ``upstream`` (a base URL); yields its host:port."""
    handler = type("Front", (_FrontHandler,), {"upstream": upstream, "behaviour": behaviour})
    with _serve(handler) as host:
        yield host


@dataclass
class TokenServer:
    """Issues ``token`` to clients that present ``user``/``password`` (basic auth)."""

    token: str
    user: str
    password: str
    requests: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def token_server(issuer: TokenServer) -> Iterator[str]:
    """A token realm (the distribution spec's token flow); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            issuer.requests.append(
                {**query, "authorization": self.headers.get("authorization", "")}
            )
            expected = httpx.BasicAuth(issuer.user, issuer.password)._auth_header
            ok = self.headers.get("authorization") == expected
            body = json.dumps({"token": issuer.token} if ok else {"error": "denied"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serve(Handler) as host:
        yield f"http://{host}/token"


@contextmanager
def serve_static(manifest: bytes) -> Iterator[str]:
    """A "registry" that answers every manifest GET with ``manifest`` (and 404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            found = "/manifests/" in self.path
            body = manifest if found else b'{"errors":[{"code":"BLOB_UNKNOWN"}]}'
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serve(Handler) as host:
        yield host
