"""Hearth on a real two-node Ray cluster (loopback): the head (2 CPUs) and a second node
(1 CPU), each with its own HEARTH_HOME; PostgreSQL for keys, usage and shared quotas. The tiny
model is only in the head's store: the replica on the second node pulls it from the head's /v2
API. One cluster per module (starting Ray and the replicas takes most of the time)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.config import Settings
from hearth.devtools.tiny_gguf import write_tiny_gguf
from hearth.store import Store
from tests.cluster.ray_cluster import LocalRayCluster, free_port, start_local_cluster
from tests.postgres import fresh_database, throwaway_cluster

MODEL = "tiny"
READY_TIMEOUT = 150.0


@dataclass
class HearthCluster:
    ray: LocalRayCluster
    url: str
    head_home: Path
    worker_home: Path
    database_url: str
    model_id: str  # the head's manifest digest: a pulled copy has the same

    def status(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/cluster/status", timeout=30)
        response.raise_for_status()
        status: dict[str, Any] = response.json()
        return status

    def ready_replicas(self) -> list[dict[str, Any]]:
        return [r for r in self.status()["replicas"] if r["ready"]]

    def wait_ready(self, count: int, *, exclude: frozenset[str] = frozenset()) -> list[Any]:
        deadline = time.monotonic() + READY_TIMEOUT
        replicas: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                replicas = [r for r in self.ready_replicas() if r["replica"] not in exclude]
            except httpx.HTTPError:
                replicas = []
            if len(replicas) >= count:
                return replicas
            time.sleep(1)
        raise AssertionError(f"{count} ready replicas expected, got {replicas}\n{self.ray.logs()}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_cluster() as superuser_url, fresh_database(superuser_url) as url:
        yield url


@pytest.fixture(scope="module")
def hearth_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[HearthCluster]:
    base = tmp_path_factory.mktemp("cluster")
    head_home, worker_home = base / "head", base / "worker"
    model = write_tiny_gguf(base / "tiny.gguf")
    stored = Store(Settings.from_env({"HEARTH_HOME": str(head_home)})).import_gguf(model, MODEL)
    http_port = free_port()
    (head_home / "hearth.toml").write_text(
        f'[cluster]\nhttp = "127.0.0.1:{http_port}"\n\n'
        f'[cluster.models."{MODEL}"]\nreplicas = 2\nnum_cpus = 1\nmax_ongoing_requests = 8\n'
    )
    ray = start_local_cluster(head_home, worker_home)
    try:
        _deploy(ray, head_home, postgres_url)
        cluster = HearthCluster(
            ray=ray,
            url=f"http://127.0.0.1:{http_port}",
            head_home=head_home,
            worker_home=worker_home,
            database_url=postgres_url,
            model_id=stored.manifest_digest,
        )
        cluster.wait_ready(2)
        yield cluster
    finally:
        ray.stop()


def _deploy(ray: LocalRayCluster, head_home: Path, database_url: str) -> None:
    """What `hearth serve --cluster ADDRESS` does, minus the wait for Ctrl-C (Serve keeps the
    application running after the driver exits)."""
    env = {
        **os.environ,
        "HEARTH_HOME": str(head_home),
        "HEARTH_DATABASE_URL": database_url,
        "HEARTH_MAX_SEQS": "2",  # requests queue in a replica's engine: failover has some
    }
    code = (
        "from hearth.cluster.serve import cluster_config, deploy\n"
        "from hearth.config import Settings\n"
        "settings = Settings.from_env()\n"
        f"print(deploy({ray.address!r}, settings, cluster_config(settings)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"deploy failed:\n{result.stderr[-4000:]}\n{ray.logs()}")
