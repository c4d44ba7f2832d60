"""Training on the tiny llama model: the GGUF adapter agrees with PEFT in llama.cpp, resume
continues where a stop left off, a full disk leaves the previous checkpoint usable, QLoRA keeps
learning after an evaluation pass."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.llm import LLM, EngineConfig
from hearth.engine.sampling import SamplingParams
from hearth.finetune import checkpoint as ckpt
from hearth.finetune import data as ds
from hearth.finetune.base import LoadedBase, load_base
from hearth.finetune.evaluate import greedy_tokens, held_out_loss
from hearth.finetune.export import export_gguf_lora
from hearth.finetune.options import TrainOptions
from hearth.finetune.train import Trainer, add_lora
from hearth.store import LocalModel, Store
from hearth.store.profile import ModelProfile
from tests.finetune.conftest import tiny_facts, write_jsonl
from tests.greedy import tokens_of

OPTIONS = TrainOptions(rank=4, lr=1e-2, batch_size=4, max_steps=8, dropout=0.0, dtype="fp32")
CONFIG = EngineConfig(context=256, threads=2)
EOS = 2  # the tiny model's </s>


def _setup(
    model: LocalModel, tmp_path: Path, method: str = "lora"
) -> tuple[LoadedBase, list[ds.Example], list[ds.TokenizedExample]]:
    examples = ds.load_examples(write_jsonl(tmp_path / "d.jsonl", tiny_facts()))
    base = load_base(
        model, tmp_path / "work", dtype="fp32", method=method, cache_dir=tmp_path / "hf"
    )
    return base, examples, ds.tokenize_examples(examples, base.tokenizer, 64, "d")


def _llama_greedy(model_path: Path, adapters: tuple[Path, ...], prompts: list[list[int]]) -> Any:
    params = SamplingParams(temperature=0, max_tokens=8)
    with LLM(model_path, CONFIG, ModelProfile(adapters=adapters)) as llm:
        outputs = [tokens_of(llm.generate(ids, params)[0]) for ids in prompts]
    return [out[: out.index(EOS)] if EOS in out else out for out in outputs]


def test_gguf_adapter_in_llama_cpp_agrees_with_peft(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    _, model = tiny_store
    base, examples, tokens = _setup(model, tmp_path)
    peft_model = add_lora(base.model, OPTIONS)
    cases = [ds.prompt_case(example, base.tokenizer) for example in examples[:4]]
    prompts = [case.token_ids(base.tokenizer) for case in cases]
    Trainer(peft_model, tokens, OPTIONS, tmp_path / "ckpt", 2).run(lambda: False, lambda r: None)
    peft_answers = greedy_tokens(peft_model, base.tokenizer, cases, 8)
    adapter = export_gguf_lora(peft_model, model.model_path, tmp_path / "lora.gguf")
    assert _llama_greedy(model.model_path, (adapter,), prompts) == peft_answers
    assert _llama_greedy(model.model_path, (), prompts) != _llama_greedy(
        model.model_path, (adapter,), prompts
    )


def test_resume_continues_from_the_checkpoint_as_if_never_stopped(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    _, model = tiny_store
    base, _, tokens = _setup(model, tmp_path)
    import torch

    torch.manual_seed(0)
    whole = Trainer(add_lora(base.model, OPTIONS), tokens, OPTIONS, tmp_path / "a", 2)
    uninterrupted = whole.run(lambda: False, lambda r: None).losses
    base, _, tokens = _setup(model, tmp_path)
    torch.manual_seed(0)
    first = Trainer(add_lora(base.model, OPTIONS), tokens, OPTIONS, tmp_path / "b", 2)
    reports: list[int] = []
    stopped = first.run(lambda: len(reports) >= 3, lambda r: reports.append(r.step))
    assert stopped.stopped and stopped.steps == 3
    assert ckpt.latest_checkpoint(tmp_path / "b") is not None
    base, _, tokens = _setup(model, tmp_path)
    torch.manual_seed(123)  # a fresh adapter: the checkpoint must replace its weights
    second = Trainer(add_lora(base.model, OPTIONS), tokens, OPTIONS, tmp_path / "b", 2)
    resumed = second.run(lambda: False, lambda r: None, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps == OPTIONS.max_steps
    assert resumed.losses == pytest.approx(uninterrupted, rel=1e-4)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, model = tiny_store
    base, _, tokens = _setup(model, tmp_path)
    trainer = Trainer(add_lora(base.model, OPTIONS), tokens, OPTIONS, tmp_path / "c", 2)
    trainer.run(lambda: False, lambda r: None)  # checkpoint at step 8
    real_save = ckpt.save_file

    def fill_disk(tensors: dict[str, Any], filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(ckpt, "save_file", fill_disk)
    with pytest.raises(OSError) as caught:
        trainer.save(9)
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.setattr(ckpt, "save_file", real_save)
    latest = ckpt.latest_checkpoint(tmp_path / "c")
    assert latest is not None and latest.step == 8
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".tmp")] == []
    base, _, tokens = _setup(model, tmp_path)
    again = Trainer(add_lora(base.model, OPTIONS), tokens, OPTIONS, tmp_path / "c", 2)
    assert again.resume() == 8


def test_qlora_still_learns_after_an_evaluation_pass(
    tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    """bitsandbytes' AVX512-BF16 path repacks 4-bit weights in eval mode and then trains
    without autograd through them; Hearth switches it off (NOTES-finetune.md)."""
    from bitsandbytes.nn.modules import Linear4bit

    _, model = tiny_store
    base, _, tokens = _setup(model, tmp_path, method="qlora")
    layers = [m for m in base.model.modules() if isinstance(m, Linear4bit)]
    assert layers and all(not m.support_avx512bf16_for_cpu for m in layers)
    options = TrainOptions(rank=4, lr=1e-2, batch_size=4, max_steps=10, dropout=0.0)
    peft_model = add_lora(base.model, options)
    before = held_out_loss(peft_model, tokens, 2, 4)
    assert before is not None
    result = Trainer(peft_model, tokens, options, tmp_path / "q", 2).run(
        lambda: False, lambda r: None
    )
    after = held_out_loss(peft_model, tokens, 2, 4)
    assert after is not None and after < before * 0.7
    assert result.losses[-1] < result.losses[0] * 0.7
