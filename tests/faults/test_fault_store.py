"""Store faults: a process killed in the middle of writing a blob, and a disk that fills up
during an import. Either way the store holds no half blob (`hearth verify` passes), `hearth gc`
clears what was left, and the same command succeeds once it can."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.store import Store
from hearth.store.blobs import PARTIAL_PREFIX, TEMP_PREFIX
from tests.cli.process import run_hearth

# Writes 64 KiB chunks slowly through the store's one blob-writing path, and says when the
# first ones are on disk, so the parent can kill it mid-write.
SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hearth.store.blobs import BlobStore

    def chunks():
        for i in range(10_000):
            yield bytes([i % 256]) * 65536
            if i == 3:
                print("writing", flush=True)
            time.sleep(0.005)

    BlobStore(Path(sys.argv[1])).write_stream(chunks())
    """
)


def leftovers(blobs: Path) -> list[str]:
    return sorted(
        p.name for p in blobs.iterdir() if p.name.startswith((TEMP_PREFIX, PARTIAL_PREFIX))
    )


def test_a_writer_killed_mid_blob_leaves_no_half_blob(hearth_home: Path, tiny_model: Path) -> None:
    store = Store(Settings.from_env({"HEARTH_HOME": str(hearth_home)}))
    store.import_gguf(tiny_model, "tiny")
    blobs_before = set(store.blobs.digests())
    with subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(store.blobs.root)],
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    assert leftovers(store.blobs.root)  # the kill did land mid-write
    assert set(store.blobs.digests()) == blobs_before  # and no digest name was taken
    verified = run_hearth(hearth_home, "verify")
    assert verified.returncode == 0, verified.stderr
    collected = run_hearth(hearth_home, "gc", "--older-than", "0")
    assert collected.returncode == 0, collected.stderr
    assert leftovers(store.blobs.root) == []
    assert set(store.blobs.digests()) == blobs_before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root can mount one here): smaller than the tiny model (436 KB)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def grow(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)


def test_a_full_disk_fails_an_import_cleanly_and_it_works_once_there_is_room(
    small_disk: Path, tiny_model: Path
) -> None:
    home = small_disk / "hearth"
    failed = run_hearth(home, "import", str(tiny_model), "--name", "tiny")
    assert failed.returncode == 1
    assert "no space left on the device" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (home / "blobs").exists() or leftovers(home / "blobs") == []
    assert run_hearth(home, "verify").returncode == 0
    grow(small_disk, "4m")
    imported = run_hearth(home, "import", str(tiny_model), "--name", "tiny")
    assert imported.returncode == 0, imported.stderr
    verified = run_hearth(home, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "tiny" in run_hearth(home, "list").stdout
