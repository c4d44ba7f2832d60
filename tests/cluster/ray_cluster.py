"""A real two-node Ray cluster on loopback for tests: ``ray start --head --block`` and a second
node (``ray start --address ... --block``), each with its own HEARTH_HOME (no shared store),
each in its own process group so that stopping it ends its raylet and workers too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT = 60.0


@dataclass
class LocalRayCluster:
    root: Path
    address: str  # the GCS address: 127.0.0.1:PORT
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[BinaryIO] = field(default_factory=list)

    def add_node(self, home: Path, cpus: int, *, head: bool = False) -> None:
        log = open(self.root / f"node-{len(self.processes)}.log", "wb")  # noqa: SIM115
        self.log_files.append(log)
        command = [RAY, "start", "--block", f"--num-cpus={cpus}", *_common_flags(self.root)]
        if head:
            port = self.address.rsplit(":", 1)[1]
            command += ["--head", f"--port={port}", f"--ray-client-server-port={free_port()}"]
            command += ["--include-dashboard=false"]
        else:
            command += [f"--address={self.address}"]
        env = {**os.environ, "HEARTH_HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)

    def stop(self) -> None:
        for process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 5  # then SIGKILL: nothing to flush in a test
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:  # raylets and workers left behind
            _signal_group(process, signal.SIGKILL)
            process.wait()
        for log in self.log_files:
            log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.root.glob("*.log"))


def start_local_cluster(head_home: Path, worker_home: Path) -> LocalRayCluster:
    # A short temp dir: Ray's Unix socket paths must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="hr-", dir="/tmp"))
    cluster = LocalRayCluster(root=root, address=f"127.0.0.1:{free_port()}")
    try:
        cluster.add_node(head_home, cpus=2, head=True)
        wait_for_port(cluster.address, cluster)
        cluster.add_node(worker_home, cpus=1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _common_flags(root: Path) -> list[str]:
    # Two nodes on one machine: every fixed default port would collide.
    return [
        f"--temp-dir={root}",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_for_port(address: str, cluster: LocalRayCluster) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, int(port))) == 0:
                return
        if any(p.poll() is not None for p in cluster.processes):
            break
        time.sleep(0.2)
    raise RuntimeError(f"Ray head did not start on {address}:\n{cluster.logs()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
