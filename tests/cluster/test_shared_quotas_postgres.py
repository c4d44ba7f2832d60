"""Shared quotas on a real PostgreSQL: processes racing for the last tokens of a quota, and two
live servers enforcing one key's limits together (HEARTH_SHARED_QUOTAS=1)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.db import create_database_engine, open_database
from hearth.errors import QuotaExceededError
from hearth.governance.limiter import Subject
from hearth.governance.limits import Limits
from hearth.governance.shared import SharedLimiter
from hearth.server.keys import KeyStore
from hearth.store import Store
from tests.postgres import find_bin_dir, fresh_database, start_cluster
from tests.server.live_server import live_server, server_settings

ROOT = Path(__file__).resolve().parents[2]
QUOTA = 2_000
TEAM = Subject("team", "racers", Limits(monthly_tokens=QUOTA))
NO_EOS = {"2": -100}  # the tiny model's </s>: answers run to max_tokens


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found: run scripts/install_system_deps.sh")
    cluster = start_cluster(bin_dir)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def database_url(cluster_url: str) -> Iterator[str]:
    with fresh_database(cluster_url) as url:
        yield url


def race(url: str, process: int, threads: int, start_at: float) -> None:
    """One racing process (run in a child): ``threads`` threads reserve for the key
    ``racer-<process>`` and the shared team until the team's quota refuses, each generation
    using all it reserved. Prints the reservations as JSON."""
    engine = create_database_engine(url)
    limiter = SharedLimiter(engine)
    subjects = [Subject("key", f"racer-{process}", Limits(rpm=100_000)), TEAM]
    results: list[int] = []  # tokens reserved and used
    lock = threading.Lock()

    def racer(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            order = subjects if rng.random() < 0.5 else subjects[::-1]  # any order: no deadlock
            try:
                limiter.admit(order)
                held = limiter.reserve(order, prompt=20, max_tokens=rng.randint(10, 80))
            except QuotaExceededError:
                return
            limiter.settle(held, held.tokens)
            with lock:
                results.append(held.tokens)

    workers = [threading.Thread(target=racer, args=(process * 100 + i,)) for i in range(threads)]
    time.sleep(max(0.0, start_at - time.time()))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    engine.dispose()
    print(json.dumps(results))


def test_processes_racing_for_the_last_tokens_never_overshoot(database_url: str) -> None:
    start_at = time.time() + 5  # after every child has imported Hearth
    code = (
        "import sys; from tests.cluster.test_shared_quotas_postgres import race;"
        " race(sys.argv[1], int(sys.argv[2]), 2, float(sys.argv[3]))"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, database_url, str(process), str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for process in range(4)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        results.append(json.loads(out))
    assert sum(1 for process in results if process) >= 2  # a race between processes
    used = sum(sum(process) for process in results)
    assert used <= QUOTA  # reservations are atomic across processes: no overshoot at all
    assert used > QUOTA - 21  # and the quota was used up (a request needs 21 tokens at least)
    engine = create_database_engine(database_url)
    try:
        counted = SharedLimiter(engine).used(TEAM)
    finally:
        engine.dispose()
    assert counted["tokens_month"] == used
    assert counted["in_flight"] == 0 and counted["reserved_tokens"] == 0


@pytest.fixture
def two_servers(
    tmp_path: Path, tiny_chat_model: Path, database_url: str
) -> Iterator[tuple[str, str, KeyStore]]:
    """Two live servers with their own homes and one PostgreSQL database."""
    urls = []
    with_servers: list[Any] = []
    settings = [
        server_settings(
            tmp_path / name,
            HEARTH_DATABASE_URL=database_url,
            HEARTH_SHARED_QUOTAS="1",
            HEARTH_CACHE_SEQS="0",
            HEARTH_THREADS="1",
        )
        for name in ("a", "b")
    ]
    for one in settings:
        Store(one).import_gguf(tiny_chat_model, "tiny-chat")
    database = open_database(settings[0])
    keys = KeyStore(database)
    keys.create("probe", models=None, expires=None)  # keys are required from here on
    try:
        for one in settings:
            server = live_server(one)
            urls.append(server.__enter__())
            with_servers.append(server)
        yield urls[0], urls[1], keys
    finally:
        for server in reversed(with_servers):
            server.__exit__(None, None, None)
        database.dispose()


def chat(base_url: str, secret: str, max_tokens: int) -> httpx.Response:
    body = {
        "model": "tiny-chat",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "logit_bias": NO_EOS,
    }
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def new_key(keys: KeyStore, name: str, **limits: int) -> str:
    created = keys.create(name, models=None, expires=None, limits=Limits(**limits))  # type: ignore[arg-type]
    return created.secret


def test_two_servers_enforce_one_keys_limits_together(
    two_servers: tuple[str, str, KeyStore],
) -> None:
    first, second, keys = two_servers
    secret = new_key(keys, "rpm-3", rpm=3)
    for base_url in (first, second, first):
        assert chat(base_url, secret, 1).status_code == 200
    refused = chat(second, secret, 1)  # its 4th request this minute, the 2nd on this server
    assert refused.status_code == 429
    assert "3 requests per minute" in refused.json()["error"]["message"]
    assert 50 <= int(refused.headers["retry-after"]) <= 61

    probe = chat(first, new_key(keys, "probe-tokens"), 1).json()
    prompt = probe["usage"]["prompt_tokens"]
    quota = 6 * (prompt + 20)
    secret = new_key(keys, "tokens", monthly_tokens=quota)
    used: list[int] = []
    refusals: list[httpx.Response] = []
    lock = threading.Lock()

    def racer(base_url: str) -> None:
        while True:
            reply = chat(base_url, secret, 20)
            with lock:
                if reply.status_code != 200:
                    refusals.append(reply)
                    return
                used.append(reply.json()["usage"]["total_tokens"])

    threads = [threading.Thread(target=racer, args=(url,)) for url in (first, second) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(used) <= quota  # one quota for both servers
    assert sum(used) > quota - (prompt + 20)
    assert len(refusals) == 4
    for reply in refusals:
        assert reply.status_code == 429 and int(reply.headers["retry-after"]) >= 1
        assert "monthly quota" in reply.json()["error"]["message"]
