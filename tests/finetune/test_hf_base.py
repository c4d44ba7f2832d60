"""Hugging Face bases: `hearth import` of a folder keeps its files as HF_FILE layers (gc keeps
them, `--no-source` skips them, `hearth show` counts them), and a fine-tune of such a model
trains on those files as they are, then serves its adapter over the converted GGUF."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.cli.store_cmds import human_size
from hearth.config import Settings
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.finetune.jobs import JobStore
from hearth.finetune.options import JobSpec, TrainOptions
from hearth.store import MediaType, Store
from hearth.store.integrity import collect_garbage
from hearth.store.manifest import TITLE_ANNOTATION
from tests.convert.llm_helpers import LLAMA3_TOKENIZER, build_tokenizer, token_count, write_tiny_llm
from tests.finetune.conftest import tiny_facts, write_jsonl

OPTIONS = TrainOptions(
    rank=4, lr=1e-2, batch_size=4, max_steps=12, dropout=0.0, dtype="fp32", eval_split=0.25
)
SOURCE_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder (safetensors, config, tokenizer, model card)."""
    from transformers import LlamaConfig

    tokenizer = build_tokenizer(LLAMA3_TOKENIZER)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        vocab_size=token_count(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return write_tiny_llm(tmp_path_factory.mktemp("hf") / "tiny-hf", config, tokenizer)


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_import_keeps_the_folder_files_and_gc_keeps_them(
    settings: Settings, hf_folder: Path
) -> None:
    store = Store(settings)
    model = store.import_hf_dir(hf_folder, "tiny-hf")
    source = {
        layer.annotations[TITLE_ANNOTATION]: layer
        for layer in model.manifest.layers
        if layer.media_type == MediaType.HF_FILE
    }
    assert set(source) >= SOURCE_FILES and "README.md" not in source
    for name, layer in source.items():
        assert layer.digest == _sha256(hf_folder / name)
        assert store.blobs.has(layer.digest)
    assert model.manifest.layer(MediaType.MODEL) is not None  # still served from its GGUF
    collect_garbage(store)
    assert all(store.blobs.has(layer.digest) for layer in source.values())
    again = store.import_hf_dir(hf_folder, "tiny-hf-2")
    again_digests = {d.digest for d in again.manifest.layers if d.media_type == MediaType.HF_FILE}
    assert again_digests == {layer.digest for layer in source.values()}  # stored once
    store.remove("tiny-hf")
    assert all(store.blobs.has(digest) for digest in again_digests)  # tiny-hf-2 holds them
    store.remove("tiny-hf-2")
    assert not any(store.blobs.has(digest) for digest in again_digests)


def test_import_no_source_and_show(hearth_home: Path, hf_folder: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["import", str(hf_folder), "--name", "with-source"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["show", "with-source"])
    kept = [path for path in hf_folder.iterdir() if path.name != "README.md"]  # the card is not
    line = f"HF source       {len(kept)} files, {human_size(sum(p.stat().st_size for p in kept))}"
    assert result.exit_code == 0 and line in result.stdout, result.stdout
    result = runner.invoke(app, ["import", str(hf_folder), "--name", "bare", "--no-source"])
    assert result.exit_code == 0, result.output
    bare = Store(Settings.from_env({"HEARTH_HOME": str(hearth_home)})).resolve("bare")
    assert not [d for d in bare.manifest.layers if d.media_type == MediaType.HF_FILE]
    assert "HF source" not in runner.invoke(app, ["show", "bare"]).stdout


def test_a_fine_tune_of_an_hf_import_trains_on_its_source_and_serves(
    settings: Settings, hf_folder: Path, tmp_path: Path
) -> None:
    store = Store(settings)
    store.import_hf_dir(hf_folder, "tiny-hf")
    data = write_jsonl(tmp_path / "facts.jsonl", tiny_facts(8))
    jobs = JobStore(settings)
    job_id = jobs.create(JobSpec("tiny-hf", str(data), "tiny-hf-ft", OPTIONS))
    status = jobs.run(job_id)
    assert status.status == "succeeded", status.message
    log = "\n".join(jobs.log_tail(job_id, 200))
    assert "base loaded from its Hugging Face source (" in log
    work = jobs.folder(job_id) / "work" / "hf-source"
    weights = store.resolve("tiny-hf").manifest.layers
    blob = next(
        store.blobs.path(d.digest)
        for d in weights
        if d.annotations.get(TITLE_ANNOTATION) == "model.safetensors"
    )
    assert (work / "model.safetensors").samefile(blob)  # a hard link, not a copy
    tuned = store.resolve("tiny-hf-ft")
    lineage = json.loads(store.read_layer(tuned, MediaType.LINEAGE) or b"{}")
    assert lineage["base"]["loaded_from"] == "hf-source"
    assert MediaType.ADAPTER in [layer.media_type for layer in tuned.manifest.layers]
    params = SamplingParams(temperature=0, max_tokens=8)
    with ModelManager(store, settings) as manager:
        tuned_answer = _answer(manager, "tiny-hf-ft", params)
        assert tuned_answer.startswith("hello")  # what every completion starts with
        assert not _answer(manager, "tiny-hf", params).startswith("hello")


def _answer(manager: ModelManager, name: str, params: SamplingParams) -> str:
    with manager.acquire(name) as view:
        return view.complete("Q1: ", params).text()
