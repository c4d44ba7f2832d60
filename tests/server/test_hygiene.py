"""Network hygiene: the Host check against DNS rebinding, no CORS, the dashboard's security
headers, and nothing but loopback bound by default."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hearth.config import Settings
from hearth.errors import ConfigError
from hearth.server.hygiene import allowed_hosts, host_allowed, host_name
from hearth.server.ui import routes as ui_routes
from tests.cli.process import HEARTH, hearth_env
from tests.server.live_server import live_server, server_settings


def test_the_default_bind_is_loopback() -> None:
    assert Settings.from_env({}).host == "127.0.0.1:11435"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:11435", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("evil.example:80", "evil.example"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_host_name_drops_the_port_and_case(header: str, name: str) -> None:
    assert host_name(header) == name


def test_loopback_names_pass_and_others_need_the_allow_list() -> None:
    for name in ("localhost", "127.0.0.1", "127.8.9.1", "::1", "app.localhost"):
        assert host_allowed(name, ())
    for name in ("evil.example", "localhost.evil.example", "10.0.0.5", "0.0.0.0"):
        assert not host_allowed(name, ())
    assert host_allowed("hearth.lan", ("hearth.lan",))
    assert host_allowed("gpu1.corp.example", ("*.corp.example",))
    assert not host_allowed("corp.example.evil", ("*.corp.example",))
    assert host_allowed("anything.example", ("*",))


def test_the_bind_address_is_allowed_unless_it_is_a_wildcard() -> None:
    bound = Settings.from_env({"HEARTH_HOST": "10.1.2.3:11435", "HEARTH_ALLOWED_HOSTS": "a.lan"})
    assert allowed_hosts(bound) == {"10.1.2.3", "a.lan"}
    assert allowed_hosts(Settings.from_env({"HEARTH_HOST": "0.0.0.0:11435"})) == set()
    assert allowed_hosts(Settings.from_env({"HEARTH_HOST": "[::]:11435"})) == set()


def test_allowed_hosts_are_names_without_ports() -> None:
    parsed = Settings.from_env({"HEARTH_ALLOWED_HOSTS": " Hearth.LAN, [fd00::1] ,, *"})
    assert parsed.allowed_hosts == ("hearth.lan", "fd00::1", "*")
    for bad in ("hearth.lan:8080", "http://hearth.lan"):
        with pytest.raises(ConfigError, match="HEARTH_ALLOWED_HOSTS"):
            Settings.from_env({"HEARTH_ALLOWED_HOSTS": bad})


def test_a_foreign_host_gets_421_with_an_error_object(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, HEARTH_ALLOWED_HOSTS="hearth.lan")
    with live_server(settings) as url, httpx.Client(base_url=url) as client:
        for path in ("/health", "/v1/models", "/ui", "/api/tags"):
            refused = client.get(path, headers={"host": "evil.example:11435"})
            assert refused.status_code == 421, path
            assert refused.json()["error"]["code"] == "invalid_host"
            assert refused.json()["error"]["type"] == "invalid_request_error"
        for host in ("localhost", "127.0.0.1:1", "[::1]:11435", "hearth.lan", "HEARTH.lan:80"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host


def test_a_star_accepts_any_host(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, HEARTH_HOST="0.0.0.0:11435", HEARTH_ALLOWED_HOSTS="*")
    with live_server(settings) as url:
        assert httpx.get(f"{url}/health", headers={"host": "evil.example"}).status_code == 200


def test_no_cors_headers_are_ever_sent(tmp_path: Path) -> None:
    origin = {"origin": "https://evil.example"}
    with live_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url) as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={**origin, "access-control-request-method": "POST"},
        )
        simple = client.get("/v1/models", headers=origin)
        for answer in (preflight, simple):
            assert not [h for h in answer.headers if h.startswith("access-control-")]
        assert simple.headers["x-content-type-options"] == "nosniff"


def test_dashboard_pages_carry_security_headers(tmp_path: Path) -> None:
    with live_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url) as client:
        for path in ("/ui", "/ui/static/app.js", "/ui/static/style.css"):
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["cache-control"] == "no-store"


def test_the_dashboard_needs_no_inline_code() -> None:
    """What lets its CSP forbid inline scripts and styles: there are none to allow."""
    for page in ui_routes.STATIC_DIR.glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page.name
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html), page.name
    for script in ui_routes.STATIC_DIR.glob("*.js"):
        assert not re.search(r"\beval\(|new Function\(", script.read_text()), script.name


# Inside a fresh network namespace port 11435 is free, whatever runs on this machine.
DEFAULT_SERVE = """
import os, signal, subprocess, sys, time, httpx
env = {k: v for k, v in os.environ.items() if k != "HEARTH_HOST"}
server = subprocess.Popen([sys.argv[1], "serve"], env=env, stderr=subprocess.DEVNULL)
try:
    for _ in range(600):
        try:
            if httpx.get("http://127.0.0.1:11435/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    rebound = httpx.get("http://127.0.0.1:11435/health", headers={"host": "evil.example"})
    print("host-check", rebound.status_code)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                print("listen", local)
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
"""


def test_hearth_serve_binds_loopback_only_by_default(hearth_home: Path) -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare and ip (util-linux, iproute2) are needed for a private network")
    script = f"ip link set lo up && exec {sys.executable} -c '{DEFAULT_SERVE}' {HEARTH}"
    run = subprocess.run(
        ["unshare", "-rn", "sh", "-c", script],
        env=hearth_env(hearth_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n").count("host-check 421") == 1
    listening = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("listen")]
    assert listening == [f"0100007F:{11435:04X}"]  # 127.0.0.1:11435, and nothing else
