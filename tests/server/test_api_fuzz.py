"""Schemathesis against Hearth's own OpenAPI document (/openapi.json), every operation, on a
live loopback server with the tiny model: no 500s, no hangs (a per-request timeout), and
responses that match their declared schemas.

Two runs on a server with an admin key, in its own throwaway HEARTH_HOME (deletions and key
revocations are real): without a key (every answer must be a clean 401), then with the admin
key and a dashboard session, so every route, /ui/api included, is reached. Each run is seeded
and bounded (``EXAMPLES`` cases per operation and phase). The hooks (``api_fuzz_hooks.py``)
point generated model names at real models, so generated parameters reach the engine;
HEARTH_CONTEXT=256 bounds every generation.

POST /api/pull is left out: a generated name would send the server to Hugging Face or to an
arbitrary registry host over the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.db import open_database
from hearth.server.keys import KeyStore
from hearth.server.ui.sessions import COOKIE, CSRF_HEADER
from hearth.store import Store
from tests.server.api_fuzz_hooks import FUZZ_MODEL, VICTIM_MODEL
from tests.server.live_server import live_server, server_settings

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 6
SEED = 20261125
REQUEST_TIMEOUT_S = 30  # a hang is a failure, not a stuck CI job


def fuzz(base: str, workdir: Path, *headers: str, examples: int = EXAMPLES) -> None:
    """Run schemathesis on ``base``; fail with its report if it found anything."""
    command = [
        SCHEMATHESIS,
        "run",
        f"{base}/openapi.json",
        f"--max-examples={examples}",
        f"--seed={SEED}",
        "--phases=examples,coverage,fuzzing",
        "--checks=not_a_server_error,response_schema_conformance",
        f"--request-timeout={REQUEST_TIMEOUT_S}",
        "--exclude-path=/api/pull",
        "--workers=1",
        "--no-shrink",
        "--warnings=off",
        "--output-truncate=false",
    ]
    for header in headers:
        command += ["-H", header]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.server.api_fuzz_hooks",
        "PYTHONPATH": str(REPO),
    }
    run = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "Tested: " in report  # it ran operations, not just loaded the schema


@pytest.fixture
def fuzz_home(tmp_path: Path, tiny_chat_model: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    settings = server_settings(home)
    store = Store(settings)
    store.import_gguf(tiny_chat_model, FUZZ_MODEL)
    store.copy(FUZZ_MODEL, VICTIM_MODEL)
    yield home


@pytest.mark.timeout(900)  # about a minute on an idle 2-core machine; 6 when it is shared
def test_fuzz_with_and_without_an_admin_key(fuzz_home: Path, tmp_path: Path) -> None:
    # One llama.cpp thread: spinning workers only slow a machine that runs other tests.
    settings = server_settings(fuzz_home, HEARTH_CONTEXT="256", HEARTH_THREADS="1")
    database = open_database(settings)
    admin = KeyStore(database).create("fuzz-admin", models=None, expires=None, admin=True).secret
    database.dispose()
    with live_server(settings) as base:
        fuzz(base, tmp_path, examples=2)  # no key: every answer a clean 401, never a 500
        login = httpx.post(f"{base}/ui/api/login", json={"key": admin}, headers={"origin": base})
        assert login.status_code == 200, login.text
        fuzz(
            base,
            tmp_path,
            f"Authorization: Bearer {admin}",
            f"Cookie: {COOKIE}={login.cookies[COOKIE]}",
            f"{CSRF_HEADER}: {login.json()['csrf']}",
            f"Origin: {base}",
        )
