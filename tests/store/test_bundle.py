"""Bundles on real files: export → import round trips; corrupt or unsafe bundles change nothing."""

from __future__ import annotations

import errno
import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import pytest

from hearth.config import Settings
from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.errors import DigestMismatchError, InvalidBundleError, InvalidDigestError, StoreError
from hearth.store import MediaType, Store
from hearth.store import blobs as blobs_module
from hearth.store.blobs import Blob, Progress
from hearth.store.bundle import REF_NAME, export_bundle, import_bundle
from hearth.store.integrity import verify

LICENSE_TEXT = "MIT License\n\nPermission is hereby granted, free of charge, ...\n"


def snapshot(root: Path) -> dict[str, bytes | None]:
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def source(tmp_path: Path, tiny_model: Path, tiny_chat_gguf: Path) -> Store:
    """A store with two models, one carrying a LICENSE layer, and a copy of one."""
    store = Store(Settings.from_env({"HEARTH_HOME": str(tmp_path / "source-home")}))
    store.import_gguf(tiny_model, "tiny")
    chat = store.import_gguf(tiny_chat_gguf, "acme/chat:v1")
    with store.locked():
        license_layer = store.add_text_layer(MediaType.LICENSE, LICENSE_TEXT)
        store.commit("acme/chat:v2", store.config_of(chat), [*chat.manifest.layers, license_layer])
    store.copy("tiny", "team/tiny:prod")
    return store


@pytest.fixture
def target(settings: Settings) -> Store:
    return Store(settings)


def test_export_import_round_trip(source: Store, target: Store, tmp_path: Path) -> None:
    names = ["tiny", "acme/chat:v2", "team/tiny:prod"]
    bundle_path = tmp_path / "models.tar"
    seen: list[tuple[int, int | None]] = []
    bundle = export_bundle(source, names, bundle_path, lambda d, t: seen.append((d, t)))
    assert bundle.models == ["tiny:latest", "acme/chat:v2", "team/tiny:prod"]
    assert seen[-1][0] == seen[-1][1]
    assert [p.name for p in tmp_path.iterdir() if p.name != "source-home"] == ["models.tar"]

    imported = import_bundle(target, bundle_path, lambda d, t: seen.append((d, t)))
    assert seen[-1] == (bundle_path.stat().st_size, bundle_path.stat().st_size)
    assert {str(m.name): m.manifest_digest for m in imported} == {
        name: source.resolve(name).manifest_digest
        for name in ("tiny:latest", "acme/chat:v2", "team/tiny:prod")
    }
    chat = target.resolve("acme/chat:v2")
    assert target.read_layer(chat, MediaType.LICENSE) == LICENSE_TEXT.encode()
    assert chat.info.license_id == "mit"
    # Only what the models reference: no manifest blobs left behind, nothing of acme/chat:v1's.
    referenced = set().union(*(m.manifest.digests() for m in imported))
    assert target.blobs.digests() == referenced
    assert verify(target).ok
    with LLM(target.resolve("tiny").model_path, EngineConfig(context=64, threads=2)) as llm:
        text = llm.complete("hi", SamplingParams(temperature=0, max_tokens=4))
        assert len([output for output in text]) >= 1


def test_bundle_is_an_oci_image_layout(source: Store, tmp_path: Path) -> None:
    bundle_path = export_bundle(source, ["acme/chat:v2"], tmp_path / "b.tar").path
    with tarfile.open(bundle_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        layout = json.loads(_read(tar, "oci-layout"))
        index = json.loads(_read(tar, "index.json"))
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert index["schemaVersion"] == 2
    [entry] = index["manifests"]
    assert entry["annotations"][REF_NAME] == "hearth.local/acme/chat:v2"
    assert entry["digest"] == source.resolve("acme/chat:v2").manifest_digest
    model = source.resolve("acme/chat:v2")
    expected = {entry["digest"], *model.manifest.digests()}
    blob_members = {name for name in members if name.startswith("blobs/")}
    assert blob_members == {f"blobs/sha256/{d.split(':')[1]}" for d in expected}
    assert all(m.isfile() for m in members.values())


def test_importing_twice_changes_nothing(source: Store, target: Store, tmp_path: Path) -> None:
    bundle_path = export_bundle(source, ["tiny"], tmp_path / "b.tar").path
    import_bundle(target, bundle_path)
    before = snapshot(target.home / "blobs"), snapshot(target.manifests_dir)
    import_bundle(target, bundle_path)
    assert (snapshot(target.home / "blobs"), snapshot(target.manifests_dir)) == before


def test_corrupt_bundle_changes_nothing(
    source: Store, target: Store, tmp_path: Path, tiny_chat_gguf: Path
) -> None:
    target.import_gguf(tiny_chat_gguf, "existing")
    bundle_path = export_bundle(source, ["tiny"], tmp_path / "b.tar").path
    model_digest = source.resolve("tiny").manifest.layers[0].digest
    _flip_byte_in_member(bundle_path, f"blobs/sha256/{model_digest.split(':')[1]}")
    before = snapshot(target.home)
    with pytest.raises(DigestMismatchError, match=f"blob {model_digest}.*digest mismatch"):
        import_bundle(target, bundle_path)
    assert snapshot(target.home) == before
    assert [str(m.name) for m in target.list()] == ["existing:latest"]


@pytest.mark.parametrize(
    ("member", "kind", "error", "message"),
    [
        ("../evil.txt", tarfile.REGTYPE, InvalidBundleError, "path traversal"),
        ("blobs/sha256/../../../evil", tarfile.REGTYPE, InvalidBundleError, "path traversal"),
        ("/etc/evil", tarfile.REGTYPE, InvalidBundleError, "path traversal"),
        ("blobs/sha256/link", tarfile.SYMTYPE, InvalidBundleError, "only regular files"),
        ("blobs/sha256/NOT-A-DIGEST", tarfile.REGTYPE, InvalidDigestError, "invalid digest"),
        ("something/else", tarfile.REGTYPE, InvalidBundleError, "not part of an OCI"),
    ],
)
def test_unsafe_members_are_refused(
    source: Store,
    target: Store,
    tmp_path: Path,
    member: str,
    kind: bytes,
    error: type[Exception],
    message: str,
) -> None:
    good = export_bundle(source, ["tiny"], tmp_path / "good.tar").path
    bad = tmp_path / "work" / "bad.tar"
    bad.parent.mkdir()
    with tarfile.open(good) as tar_in, tarfile.open(bad, "w") as tar_out:
        info = tarfile.TarInfo(member)
        info.type = kind
        info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
        tar_out.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        for item in tar_in.getmembers():
            tar_out.addfile(item, tar_in.extractfile(item))
    with pytest.raises(error, match=message):
        import_bundle(target, bad)
    assert target.list() == [] and target.blobs.digests() == set()
    assert not (tmp_path / "evil.txt").exists()


def test_bundle_missing_a_blob_is_refused(source: Store, target: Store, tmp_path: Path) -> None:
    good = export_bundle(source, ["tiny"], tmp_path / "good.tar").path
    model_layer = source.resolve("tiny").manifest.layers[0].digest.split(":")[1]
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as tar_in, tarfile.open(bad, "w") as tar_out:
        for item in tar_in.getmembers():
            if not item.name.endswith(model_layer):
                tar_out.addfile(item, tar_in.extractfile(item))
    with pytest.raises(InvalidBundleError, match="lacks blob"):
        import_bundle(target, bad)
    assert target.list() == [] and target.blobs.digests() == set()


def test_export_stops_at_a_damaged_blob_and_leaves_no_file(source: Store, tmp_path: Path) -> None:
    model = source.resolve("tiny")
    data = bytearray(model.model_path.read_bytes())
    data[5000] ^= 0xFF
    model.model_path.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        export_bundle(source, ["tiny"], out / "b.tar")
    assert list(out.iterdir()) == []


def test_interrupted_export_leaves_no_file(source: Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(done: int, total: int | None) -> None:
        if done > 100_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_bundle(source, ["tiny"], out / "b.tar", interrupt)
    assert list(out.iterdir()) == []


def test_interrupted_import_changes_nothing(source: Store, target: Store, tmp_path: Path) -> None:
    bundle_path = export_bundle(source, ["tiny", "acme/chat:v2"], tmp_path / "b.tar").path

    def interrupt(done: int, total: int | None) -> None:
        if done > 600_000:  # past the first model blob
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_bundle(target, bundle_path, interrupt)
    assert target.list() == [] and target.blobs.digests() == set()
    assert list(target.blobs.root.iterdir()) == []


def test_full_disk_says_no_space_and_changes_nothing(
    source: Store,
    target: Store,
    tmp_path: Path,
    tiny_chat_gguf: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC from the blob writer (tests/cli covers a real full filesystem)."""
    target.import_gguf(tiny_chat_gguf, "existing")
    bundle_path = export_bundle(source, ["tiny"], tmp_path / "b.tar").path
    before = snapshot(target.home)
    real = blobs_module._copy_hashing

    def disk_full(
        chunks: Iterable[bytes], file: BinaryIO, total: int | None, progress: Progress | None
    ) -> Blob:
        if total is not None and total > 100_000:
            file.write(b"x" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(chunks, file, total, progress)

    monkeypatch.setattr(blobs_module, "_copy_hashing", disk_full)
    with pytest.raises(StoreError, match="no space left"):
        import_bundle(target, bundle_path)
    assert snapshot(target.home) == before
    assert [str(m.name) for m in target.list()] == ["existing:latest"]


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    file = tar.extractfile(name)
    assert file is not None
    return file.read()


def _flip_byte_in_member(bundle: Path, member: str) -> None:
    with tarfile.open(bundle) as tar:
        offset = tar.getmember(member).offset_data + 1000
    with bundle.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ 0xFF]))


@pytest.mark.parametrize("cut", [0.5, 0.0], ids=["truncated", "empty"])
def test_truncated_or_not_a_tar_is_refused(
    source: Store, target: Store, tmp_path: Path, cut: float
) -> None:
    bundle_path = export_bundle(source, ["tiny"], tmp_path / "b.tar").path
    data = bundle_path.read_bytes()
    bundle_path.write_bytes(data[: int(len(data) * cut)] if cut else b"GGUF not a tar at all")
    with pytest.raises(InvalidBundleError, match="not a complete tar file"):
        import_bundle(target, bundle_path)
    assert target.list() == [] and target.blobs.digests() == set()
    assert list(target.blobs.root.glob(".tmp-*")) == []
