"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temporary directory.

Uses Debian's server binaries (``/usr/lib/postgresql/<version>/bin``, package ``postgresql``,
installed by ``scripts/install_system_deps.sh``) or ones on PATH. PostgreSQL refuses to run as
root, so as root the cluster runs as the ``postgres`` user (``runuser``). It listens on a free
loopback port with trust authentication and no fsync: fast, and gone when the tests end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

SUPERUSER = "hearth"


@dataclass(frozen=True)
class PostgresCluster:
    bin_dir: Path
    root: Path
    port: int
    run_as: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [*self.run_as, str(self.bin_dir / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


@contextmanager
def fresh_database(superuser_url: str) -> Iterator[str]:
    """The URL of a new empty database on the cluster at ``superuser_url``, dropped afterwards
    (connections still open to it are cut: ``WITH (FORCE)``)."""
    name = f"hearth_{uuid.uuid4().hex}"
    admin = create_engine(superuser_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(superuser_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def find_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries here, or None when none are installed."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if debian:
        return Path(debian[-1]).parent
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb") and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


def start_cluster(bin_dir: Path) -> PostgresCluster:
    root = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    run_as: tuple[str, ...] = ()
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        run_as = ("runuser", "-u", "postgres", "--")
    cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=_free_port(), run_as=run_as)
    data, log = str(root / "data"), str(root / "server.log")
    try:
        cluster._run(
            "initdb", "-D", data, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync"
        )
        options = (
            f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        cluster._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start")
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


@contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A PostgreSQL cluster for a ``with`` block: its superuser URL; pytest skips the test when
    no server binaries are installed."""
    import pytest

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/postgres):"
            " run scripts/install_system_deps.sh (make setup-dev does)"
        )
    cluster = start_cluster(bin_dir)
    try:
        yield cluster.url
    finally:
        cluster.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parent.parent.name  # /usr/lib/postgresql/<version>/bin/postgres
    return tuple(int(piece) for piece in part.split(".") if piece.isdigit())
