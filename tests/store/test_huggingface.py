"""Pulling from Hugging Face with the real huggingface_hub client against a local Hub
(tests/hub_server.py): choosing the GGUF by quantization, converting safetensors repositories,
tokens, offline use of the cache, one copy on disk, resumed and corrupted downloads."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from huggingface_hub import constants

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.engine.embeddings import Embedder, EmbedderConfig
from hearth.errors import (
    ConversionError,
    DigestMismatchError,
    InvalidNameError,
    ModelNotFoundError,
    SourceUnavailableError,
)
from hearth.store import MediaType, Store
from hearth.store.gguf_meta import read_gguf_info
from hearth.store.sources.huggingface import byte_counter_class, quant_of
from tests.cli.process import run_hearth
from tests.hub_server import HubRepo, HubServer, running, set_offline, use_hub
from tests.server.live_server import live_server, server_settings

CARD = b"---\nlicense: mit\ntags:\n- gguf\n---\n# Tiny\n"
LICENSE = b"MIT License\n\nPermission is hereby granted...\n"
GGUF_REPO = "Hearth-Test/Tiny-GGUF"  # the Hub's spelling; our names are lowercase
F32_FILE, Q8_FILE = "tiny-F32.gguf", "tiny-Q8_0.gguf"


@pytest.fixture(scope="session")
def gguf_files(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, bytes]:
    q8 = write_tiny_gguf(tmp_path_factory.mktemp("q8") / "q8.gguf", TinyModelSpec(quantized=True))
    return {F32_FILE: tiny_model.read_bytes(), Q8_FILE: q8.read_bytes()}


@pytest.fixture
def hub(gguf_files: dict[str, bytes], tiny_bert_dir: Path) -> Iterator[HubServer]:
    bert = HubRepo.from_folder("hearth-test/tiny-bert", tiny_bert_dir)
    bert.files["pytorch_model.bin"] = b"a pickle beside safetensors: never downloaded"
    whisper_config = json.dumps({"architectures": ["WhisperForConditionalGeneration"]}).encode()
    repos = [
        HubRepo(GGUF_REPO, {**gguf_files, "README.md": CARD, "LICENSE": LICENSE}),
        HubRepo("hearth-test/gated", {"model-Q8_0.gguf": gguf_files[Q8_FILE]}, gated=True),
        bert,
        HubRepo("hearth-test/pickled", {"config.json": b"{}", "pytorch_model.bin": b"pickle"}),
        HubRepo("hearth-test/whisper", {"config.json": whisper_config, "model.safetensors": b"x"}),
        HubRepo(
            "hearth-test/split",
            {f"m-Q8_0-0000{i}-of-00002.gguf": gguf_files[Q8_FILE] for i in (1, 2)},
        ),
    ]
    with running(HubServer(repos, token="hf_secret")) as server:
        yield server


@pytest.fixture
def hf_home(tmp_path: Path) -> Path:
    return tmp_path / "hf-home"


@pytest.fixture
def hub_env(hub: HubServer, hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_hub(monkeypatch, hub.url, hf_home)


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def cached_files(hf_home: Path, name: str) -> list[Path]:
    return sorted(hf_home.glob(f"hub/models--*/snapshots/*/{name}"))


def store_is_empty(settings: Settings) -> bool:
    manifests = list(settings.manifests_dir.rglob("*")) if settings.manifests_dir.exists() else []
    blobs = list(settings.blobs_dir.iterdir()) if settings.blobs_dir.exists() else []
    return not [p for p in manifests if p.is_file()] and not blobs


def test_pull_by_quantization(
    store: Store, hub_env: dict[str, str], hf_home: Path, gguf_files: dict[str, bytes]
) -> None:
    seen: list[tuple[int, int | None]] = []
    model = store.pull("hf.co/hearth-test/tiny-gguf:q8_0", lambda d, t: seen.append((d, t)))
    assert str(model.name) == "hf.co/hearth-test/tiny-gguf:q8_0"
    layer = model.manifest.layer(MediaType.MODEL)
    assert layer is not None and layer.digest == sha256(gguf_files[Q8_FILE])
    assert layer.annotations["org.opencontainers.image.title"] == Q8_FILE
    assert model.info.quantization == "Q8_0"
    assert model.info.license_id == "mit"  # the card's front matter beats the GGUF's apache-2.0
    assert model.info.source.startswith(f"hf:{GGUF_REPO}@")
    assert store.read_layer(model, MediaType.LICENSE) == LICENSE
    assert store.read_layer(model, MediaType.CARD) == CARD
    assert seen[-1] == (len(gguf_files[Q8_FILE]), len(gguf_files[Q8_FILE]))
    # One copy on disk: the blob is the Hugging Face cache's file, hard-linked.
    (cached,) = cached_files(hf_home, Q8_FILE)
    assert cached.stat().st_ino == model.model_path.stat().st_ino
    assert store.resolve("hf.co/hearth-test/tiny-gguf:q8_0") == model


def test_latest_needs_a_single_gguf_and_errors_list_the_choices(
    store: Store, hub_env: dict[str, str], settings: Settings
) -> None:
    with pytest.raises(SourceUnavailableError, match="has 2 GGUF files") as ambiguous:
        store.pull("hf.co/hearth-test/tiny-gguf")
    assert "hf.co/hearth-test/tiny-gguf:F32, hf.co/hearth-test/tiny-gguf:Q8_0" in str(ambiguous)
    with pytest.raises(ModelNotFoundError) as unknown:
        store.pull("hf.co/hearth-test/tiny-gguf:Q4_K_M")
    assert "tiny-gguf:F32" in str(unknown.value) and "tiny-gguf:Q8_0" in str(unknown.value)
    with pytest.raises(SourceUnavailableError, match="split into 2 files"):
        store.pull("hf.co/hearth-test/split:Q8_0")
    with pytest.raises(InvalidNameError, match="not a valid Hugging Face repository"):
        store.pull("hf.co/hearth-test/a--b")
    assert store_is_empty(settings)


def test_quantization_is_read_from_file_names() -> None:
    assert quant_of("gemma-3-1b-it-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("model.iq2_xxs.gguf") == "IQ2_XXS"
    assert quant_of("m-Q8_0-00001-of-00002.gguf") == "Q8_0"
    assert quant_of("model-bf16.gguf") == "BF16"
    assert quant_of("model.gguf") is None


def test_pull_safetensors_repo_converts_and_embeds(
    store: Store, hub: HubServer, hub_env: dict[str, str]
) -> None:
    model = store.pull("hf.co/hearth-test/tiny-bert")
    assert (model.info.architecture, model.info.license_id) == ("bert", "mit")
    assert model.info.source.startswith("hf:hearth-test/tiny-bert@")
    assert read_gguf_info(model.model_path).architecture == "bert"
    assert store.read_layer(model, MediaType.CARD) is not None
    assert hub.gets("pytorch_model.bin") == []  # pickles are never downloaded
    assert store.resolve("hf.co/hearth-test/tiny-bert") == model
    with Embedder(model.model_path, EmbedderConfig(n_threads=2)) as embedder:
        assert len(embedder.embed(["the cat sat"])[0]) == 32
    requests = len(hub.requests)
    assert store.pull("hf.co/hearth-test/tiny-bert") == model  # same commit: not converted again
    assert len(hub.requests) == requests + 1  # only the listing


def test_repos_hearth_cannot_use_are_refused_before_downloading(
    store: Store, hub: HubServer, hub_env: dict[str, str], settings: Settings
) -> None:
    with pytest.raises(ConversionError, match=r"pickle files .*arbitrary code"):
        store.pull("hf.co/hearth-test/pickled")
    with pytest.raises(ConversionError, match="WhisperForConditionalGeneration is not supported"):
        store.pull("hf.co/hearth-test/whisper")
    with pytest.raises(SourceUnavailableError, match="no GGUF files, so no Q4_K_M"):
        store.pull("hf.co/hearth-test/tiny-bert:Q4_K_M")
    assert hub.gets("pytorch_model.bin") == [] and hub.gets("model.safetensors") == []
    assert store_is_empty(settings)


def test_gated_repo_needs_hf_token(
    store: Store, hub: HubServer, hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SourceUnavailableError, match=r"gated.*set HF_TOKEN"):
        store.pull("hf.co/hearth-test/gated")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    model = store.pull("hf.co/hearth-test/gated")  # latest: the only GGUF
    assert model.info.quantization == "Q8_0"
    (download,) = hub.gets("model-Q8_0.gguf")
    assert download.headers["authorization"] == "Bearer hf_secret"


def test_offline_pull_uses_the_cache_with_the_hub_stopped(
    store: Store,
    hf_home: Path,
    gguf_files: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = HubRepo(GGUF_REPO, dict(gguf_files))
    with running(HubServer([repo])) as hub:
        use_hub(monkeypatch, hub.url, hf_home)
        first = store.pull("hf.co/hearth-test/tiny-gguf:F32")
    store.remove("hf.co/hearth-test/tiny-gguf:F32")
    with pytest.raises(SourceUnavailableError, match="not in the Hugging Face cache"):
        store.pull("hf.co/hearth-test/other:F32")  # the Hub is down and nothing is cached
    set_offline(monkeypatch, True)
    again = store.pull("hf.co/hearth-test/tiny-gguf:F32")
    assert again.manifest.layer(MediaType.MODEL) == first.manifest.layer(MediaType.MODEL)
    assert again.model_path.read_bytes() == gguf_files[F32_FILE]


def test_interrupted_download_resumes_with_a_range_request(
    store: Store,
    hub: HubServer,
    hub_env: dict[str, str],
    gguf_files: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # huggingface_hub resumes from the last chunk it wrote (10 MB on the Hub); 64 KiB chunks
    # let a 436 KB file be cut in the middle.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    half = len(gguf_files[F32_FILE]) // 2
    hub.drop_after[F32_FILE] = half
    model = store.pull("hf.co/hearth-test/tiny-gguf:F32")
    first, second = hub.gets(F32_FILE)
    assert "range" not in first.headers
    start = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= half
    assert model.model_path.read_bytes() == gguf_files[F32_FILE]
    layer = model.manifest.layer(MediaType.MODEL)
    assert layer is not None and layer.digest == sha256(gguf_files[F32_FILE])


def test_corrupted_download_fails_and_changes_nothing(
    store: Store,
    hub: HubServer,
    hub_env: dict[str, str],
    hf_home: Path,
    settings: Settings,
) -> None:
    hub.corrupt.add(F32_FILE)
    with pytest.raises(DigestMismatchError, match="digest mismatch"):
        store.pull("hf.co/hearth-test/tiny-gguf:F32")
    assert store_is_empty(settings)
    assert cached_files(hf_home, F32_FILE) == []  # the bad file left the cache too
    hub.corrupt.clear()
    assert store.pull("hf.co/hearth-test/tiny-gguf:F32").info.quantization == "F32"


def test_cache_on_another_filesystem_is_copied(
    store: Store, hub: HubServer, monkeypatch: pytest.MonkeyPatch, gguf_files: dict[str, bytes]
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == store.home.parent.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's tmp dir")
    hf_home = Path(tempfile.mkdtemp(dir=shm))
    try:
        use_hub(monkeypatch, hub.url, hf_home)
        model = store.pull("hf.co/hearth-test/tiny-gguf:Q8_0")
        (cached,) = cached_files(hf_home, Q8_FILE)
        assert cached.stat().st_ino != model.model_path.stat().st_ino
        assert model.model_path.read_bytes() == gguf_files[Q8_FILE]
    finally:
        shutil.rmtree(hf_home)


def test_cli_pull(hub: HubServer, hub_env: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "cli-home"
    result = run_hearth(home, "pull", "hf.co/hearth-test/tiny-gguf:Q8_0", env=hub_env)
    assert result.returncode == 0, result.stderr
    assert "pulled hf.co/hearth-test/tiny-gguf:Q8_0" in result.stdout
    assert os.listdir(home / "manifests" / "hf.co" / "hearth-test" / "tiny-gguf") == ["Q8_0"]


def test_server_api_pull_streams_progress(
    hub: HubServer, hub_env: dict[str, str], tmp_path: Path, gguf_files: dict[str, bytes]
) -> None:
    settings = server_settings(tmp_path / "server-home")
    with live_server(settings) as url:
        body = {"model": "hf.co/hearth-test/tiny-gguf:F32", "stream": True}
        response = httpx.post(f"{url}/api/pull", json=body, timeout=60)
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[-1] == {"status": "success"}, lines
    size = len(gguf_files[F32_FILE])
    assert (lines[-2]["completed"], lines[-2]["total"]) == (size, size)
    assert Store(settings).resolve("hf.co/hearth-test/tiny-gguf:F32").size >= size


def test_xet_progress_counts_bytes_written_once() -> None:
    """Most Hub repositories download through Xet, whose reporter drives the same counter
    with two byte counts; only the bytes written reach Hearth's progress."""
    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    seen: list[int] = []
    counter = byte_counter_class(seen.append)
    with XetDownloadProgressReporter(
        reconstruction_desc="f", total=100, log_level=logging.WARNING, tqdm_class=counter
    ) as reporter:
        for written, received in ((40, 30), (100, 60)):
            report = SimpleNamespace(
                total_bytes_completed=written,
                total_transfer_bytes_completed=received,
                total_bytes_completion_rate=1.0,
                total_transfer_bytes_completion_rate=1.0,
                total_bytes=100,
            )
            reporter.update_progress(report)
    assert seen == [40, 100]
