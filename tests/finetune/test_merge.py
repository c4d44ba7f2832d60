"""`--merge`: the trained LoRA merged into the base and stored as a full model. llama.cpp's
greedy output from the merged GGUF equals the merged PEFT model's; a merge job registers a
(quantized) full model with lineage and the base's terms; the options are checked early."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import gguf
import pytest

from hearth.config import Settings
from hearth.convert import OutType
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.errors import ValidationError
from hearth.finetune import data as ds
from hearth.finetune.base import load_base
from hearth.finetune.evaluate import greedy_tokens
from hearth.finetune.jobs import JobStore
from hearth.finetune.merge import merge_in_float32, merge_to_gguf, on_full_precision
from hearth.finetune.options import JobSpec, TrainOptions
from hearth.finetune.train import Trainer, add_lora
from hearth.server.finetune_api import FinetuneRequest
from hearth.store import LocalModel, MediaType, Store
from tests.finetune.conftest import tiny_facts, write_jsonl
from tests.finetune.test_train import _llama_greedy

OPTIONS = TrainOptions(
    rank=4, lr=1e-2, batch_size=4, max_steps=12, dropout=0.0, dtype="fp32", eval_split=0.25
)


def _fields(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    return {**fields, "tensors": [tensor.name for tensor in reader.tensors]}


def _is_full_model(path: Path) -> bool:
    fields = _fields(path)
    return (
        fields.get("general.type", "model") == "model"  # llama.cpp's default when unset
        and not any(name.startswith("adapter.") for name in fields)
        and not any(".lora_" in name for name in fields["tensors"])
        and "token_embd.weight" in fields["tensors"]
    )


def test_merged_gguf_in_llama_cpp_agrees_with_the_merged_peft_model(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    _, model = tiny_store
    examples = ds.load_examples(write_jsonl(tmp_path / "d.jsonl", tiny_facts()))
    base = load_base(model, tmp_path / "work", dtype="fp32", method="lora", cache_dir=tmp_path)
    tokens = ds.tokenize_examples(examples, base.tokenizer, 64, "d")
    peft_model = add_lora(base.model, OPTIONS)
    Trainer(peft_model, tokens, OPTIONS, tmp_path / "ckpt", 2).run(lambda: False, lambda r: None)
    cases = [ds.prompt_case(example, base.tokenizer) for example in examples[:4]]
    prompts = [case.token_ids(base.tokenizer) for case in cases]
    with_adapter = greedy_tokens(peft_model, base.tokenizer, cases, 8)
    merged = merge_to_gguf(
        peft_model,
        base.tokenizer,
        tmp_path / "work",
        tmp_path / "merged.gguf",
        name="merged",
        outtype=OutType.F32,
        quantize=None,
        threads=2,
        progress_for=lambda label: lambda done, total: None,
    )
    merged_answers = greedy_tokens(peft_model.get_base_model(), base.tokenizer, cases, 8)
    assert merged_answers == with_adapter  # merging changed nothing PEFT computes
    assert _is_full_model(merged.path) and merged.quantization == "F32"
    assert _llama_greedy(merged.path, (), prompts) == merged_answers
    assert _llama_greedy(merged.path, (), prompts) != _llama_greedy(model.model_path, (), prompts)
    assert not (tmp_path / "work" / "merged").exists()  # the HF folder is gone once converted


def test_a_small_update_survives_merging_into_bf16_weights(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    """Added in bf16, an update below the weights' rounding step would vanish (it did, on
    Gemma 3 270M): the adapted layers merge in float32."""
    import torch

    _, model = tiny_store
    base = load_base(model, tmp_path / "work", dtype="bf16", method="lora", cache_dir=tmp_path)
    original = base.model.model.layers[0].self_attn.q_proj.weight.detach().float().clone()
    peft_model = add_lora(base.model, OPTIONS)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(1e-4)
    lora_a, lora_b = layer.lora_A["default"].weight.float(), layer.lora_B["default"].weight.float()
    update = (lora_b @ lora_a) * layer.scaling["default"]
    merged = merge_in_float32(peft_model).model.layers[0].self_attn.q_proj.weight.detach()
    assert merged.dtype == torch.float32
    assert torch.allclose(merged - original, update, atol=1e-6)  # updates are about 5e-5
    assert (update.abs() < original.abs() / 256).float().mean() > 0.5  # bf16 would drop most


def test_a_qlora_adapter_is_merged_into_full_precision_weights(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    import torch
    from peft import get_peft_model_state_dict

    _, model = tiny_store
    options = replace(OPTIONS, method="qlora", max_steps=4)
    examples = ds.load_examples(write_jsonl(tmp_path / "d.jsonl", tiny_facts()))
    nf4 = load_base(model, tmp_path / "q", dtype="fp32", method="qlora", cache_dir=tmp_path)
    tokens = ds.tokenize_examples(examples, nf4.tokenizer, 64, "d")
    trained = add_lora(nf4.model, options)
    Trainer(trained, tokens, options, tmp_path / "ckpt", 2).run(lambda: False, lambda r: None)
    full = load_base(model, tmp_path / "f", dtype="fp32", method="lora", cache_dir=tmp_path)
    moved = on_full_precision(trained, full.model, options)
    expected, got = (
        get_peft_model_state_dict(m, save_embedding_layers=False) for m in (trained, moved)
    )
    assert expected.keys() == got.keys() and any(v.abs().sum() > 0 for v in expected.values())
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    cases = [ds.prompt_case(example, full.tokenizer) for example in examples[:4]]
    answers = greedy_tokens(moved, full.tokenizer, cases, 8)
    merged = merge_to_gguf(
        moved,
        full.tokenizer,
        tmp_path / "f",
        tmp_path / "merged.gguf",
        name="merged",
        outtype=OutType.F32,
        quantize=None,
        threads=2,
        progress_for=lambda label: lambda done, total: None,
    )
    assert _fields(merged.path)["general.file_type"] == gguf.LlamaFileType.ALL_F32
    prompts = [case.token_ids(full.tokenizer) for case in cases]
    assert _llama_greedy(merged.path, (), prompts) == answers


def test_a_merge_job_registers_a_quantized_full_model_with_lineage(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    store, base = tiny_store
    data = write_jsonl(tmp_path / "facts.jsonl", tiny_facts(8))
    jobs = JobStore(settings)
    spec = JobSpec("tiny", str(data), "tiny-merged", OPTIONS, merge=True, quantize="q8_0")
    job_id = jobs.create(spec)
    status = jobs.run(job_id)
    assert status.status == "succeeded", status.message
    tuned = store.resolve("tiny-merged")
    kinds = [layer.media_type for layer in tuned.manifest.layers]
    assert kinds.count(MediaType.MODEL) == 1 and MediaType.ADAPTER not in kinds
    assert tuned.model_path != base.model_path
    assert _is_full_model(tuned.model_path)
    file_type = _fields(tuned.model_path)["general.file_type"]
    assert file_type == gguf.LlamaFileType.MOSTLY_Q8_0
    assert (tuned.info.quantization, tuned.info.license_id) == ("Q8_0", "apache-2.0")
    lineage = json.loads(store.read_layer(tuned, MediaType.LINEAGE) or b"{}")
    assert lineage["merged"] is True and lineage["quantization"] == "Q8_0"
    assert lineage["base"]["model_digest"].endswith(base.model_path.name[7:])
    assert lineage["base"]["loaded_from"] == "gguf"
    assert lineage["dataset"]["digest"].startswith("sha256:")
    assert lineage["hyperparameters"]["rank"] == 4 and lineage["libraries"]["peft"]
    assert lineage["evaluation"]["improved"] is True
    record = json.loads(store.read_layer(tuned, MediaType.LICENSE_RECORD) or b"{}")
    assert record["license_id"] == "apache-2.0"
    assert record["lineage"][-1]["kind"] == "merge"
    log = "\n".join(jobs.log_tail(job_id, 200))
    assert "converting the merged model to GGUF: 100%" in log
    assert "quantizing to Q8_0: 100%" in log
    assert not list(store.blobs.root.glob(".tmp-*"))  # the merged GGUF was adopted, not left
    with ModelManager(store, settings) as manager:
        params = SamplingParams(temperature=0, max_tokens=8)
        with manager.acquire("tiny-merged") as merged, manager.acquire("tiny") as plain:
            # 12 steps teach the start of "hello N" (measured: "helo…"); the base knows nothing
            assert merged.complete("Q1: ", params).text().startswith("hel")
            assert not plain.complete("Q1: ", params).text().startswith("hel")


def test_merge_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(ValidationError, match=r"quantize.*needs --merge"):
        JobSpec("tiny", "d.jsonl", "x", quantize="Q8_0")
    with pytest.raises(ValidationError, match="invalid quantize='Q9_X'"):
        JobSpec("tiny", "d.jsonl", "x", merge=True, quantize="Q9_X")
    spec = JobSpec("tiny", "d.jsonl", "x", merge=True, quantize="q4_k_m")
    assert spec.quantize == "Q4_K_M"
    assert JobSpec.from_dict(spec.to_dict()) == spec
    body = {"base": "tiny", "data": "d.jsonl", "name": "x", "merge": True, "quantize": "Q8_0"}
    from_api = FinetuneRequest.model_validate(body).spec()
    assert (from_api.merge, from_api.quantize) == (True, "Q8_0")
