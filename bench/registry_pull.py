"""Pull throughput from a local OCI registry: `hearth pull` vs `curl` of the same blob.

    .venv/bin/python bench/registry_pull.py [--rounds 3]

Starts Debian's `docker-registry` on loopback, pushes Gemma 3 270M into it, then alternates,
each round into a fresh directory that is deleted afterwards: Hearth's whole pull (manifest,
config and the 253 MB model blob, hashed while written, verified, fsynced, renamed, manifest
committed) and `curl -o` of the model blob alone (no hashing, no fsync). Prints MB/s for each
and the ratio Hearth/curl of the medians.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hearth.config import Settings
from hearth.store import MediaType, Store
from tests.registry_server import docker_registry, registry_available

MODEL = "gemma3:270m"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not registry_available():
        sys.exit("docker-registry is not installed (scripts/install_system_deps.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="hearth-bench-registry-") as scratch:
        root = Path(scratch)
        source = Store(Settings.from_env({"HEARTH_HOME": str(root / "source")}))
        model = source.pull(MODEL)
        layer = model.manifest.layer(MediaType.MODEL)
        assert layer is not None
        with docker_registry(root / "registry") as registry:
            target = f"{registry.host}/bench/gemma:1"
            source.push(MODEL, target)
            blob_url = f"{registry.url}/v2/bench/gemma/blobs/{layer.digest}"
            hearth, curl = [], []
            for round_no in range(args.rounds):
                hearth.append(_time_hearth(root / f"hearth-{round_no}", target))
                curl.append(_time_curl(root / f"curl-{round_no}.bin", blob_url))
        _report(layer.size, hearth, curl)


def _time_hearth(home: Path, name: str) -> float:
    store = Store(Settings.from_env({"HEARTH_HOME": str(home)}))
    started = time.perf_counter()
    store.pull(name)
    elapsed = time.perf_counter() - started
    # Removed like curl's file, so both write into page cache freed the same way (writing
    # while the kernel must first reclaim cache is several times slower here).
    shutil.rmtree(home)
    return elapsed


def _time_curl(path: Path, url: str) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-o", str(path), url], check=True)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def _report(size: int, hearth: list[float], curl: list[float]) -> None:
    def rate(seconds: float) -> float:
        return size / seconds / 1e6

    print(f"model blob: {size / 1e6:.1f} MB, {len(hearth)} rounds")
    print(f"{'':8}{'median s':>10}{'MB/s':>10}   rounds (s)")
    for label, times in (("hearth", hearth), ("curl", curl)):
        median = statistics.median(times)
        rounds = " ".join(f"{t:.2f}" for t in times)
        print(f"{label:8}{median:>10.2f}{rate(median):>10.0f}   {rounds}")
    ratio = statistics.median(curl) / statistics.median(hearth)
    print(f"throughput ratio hearth/curl: {ratio:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
