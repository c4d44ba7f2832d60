"""One fine-tune from data to a registered model: validate, load, evaluate, train, evaluate,
gate, export, register (with lineage). Everything a user can get wrong is checked before the
base model is loaded (name taken, bad data lines, a base that cannot be trained)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hearth.errors import FinetuneError, ModelNotFoundError
from hearth.finetune import data as ds
from hearth.finetune.base import check_trainable, load_base
from hearth.finetune.evaluate import Answer, EvalReport, greedy_answers, held_out_loss
from hearth.finetune.export import export_gguf_lora
from hearth.finetune.lineage import lineage_json, lineage_record
from hearth.finetune.options import JobSpec
from hearth.finetune.train import StepReport, Trainer, add_lora, resolve_dtype
from hearth.modelfile.create import create_model
from hearth.modelfile.parse import Recipe
from hearth.store import LocalModel, MediaType, Store


class Reporter(Protocol):
    def log(self, message: str) -> None: ...

    def step(self, report: StepReport) -> None: ...

    def evaluation(self, report: EvalReport) -> None: ...


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | rejected | stopped
    model: str | None  # the registered name
    message: str
    evaluation: EvalReport | None = None


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter.gguf"

    @property
    def work(self) -> Path:
        return self.root / "work"


def check_name(store: Store, spec: JobSpec) -> None:
    try:
        store.resolve(spec.name)
    except ModelNotFoundError:
        return
    if not spec.force:
        raise FinetuneError(
            f"a model named {spec.name} exists already; choose another --name, or pass --force "
            "to replace it"
        )


def check_base(store: Store, base: LocalModel) -> None:
    """Trainable here, and not denied by the license policy (hearth.toml [policy]): the
    fine-tune inherits the base's terms."""
    from hearth.license import check_serving
    from hearth.license.report import policy_of

    check_trainable(base)
    check_serving(store, base, policy_of(store.settings))


def preflight(store: Store, spec: JobSpec) -> None:
    """The checks that need no model loaded: base trainable and allowed, name free, every data
    line good."""
    check_base(store, store.ensure(spec.base))
    check_name(store, spec)
    ds.load_examples(spec.data_path)
    if spec.eval_data:
        ds.load_examples(Path(spec.eval_data).expanduser())


def run_finetune(
    store: Store,
    spec: JobSpec,
    paths: JobPaths,
    reporter: Reporter,
    should_stop: Callable[[], bool],
    *,
    cache_dir: Path,
    resume: bool = False,
    job_id: str = "",
) -> Outcome:
    import torch

    options = spec.options
    base_model = store.ensure(spec.base)
    check_base(store, base_model)
    check_name(store, spec)
    examples = ds.load_examples(spec.data_path)
    if spec.eval_data:
        train, held = examples, ds.load_examples(Path(spec.eval_data).expanduser())
    else:
        train, held = ds.split_held_out(examples, options.eval_split, options.seed)
    dtype = resolve_dtype(options)
    torch.manual_seed(options.seed)
    reporter.log(f"loading {base_model.name} for training ({options.method}, {dtype})")
    loaded = load_base(
        base_model, paths.work, dtype=dtype, method=options.method, cache_dir=cache_dir
    )
    tokenizer = loaded.tokenizer
    train_tokens = ds.tokenize_examples(train, tokenizer, options.max_seq_len, spec.data)
    held_tokens = ds.tokenize_examples(held, tokenizer, options.max_seq_len, spec.eval_data or "")
    reporter.log(f"training data: {ds.token_stats(train_tokens).describe()}")
    if held_tokens:
        reporter.log(f"held-out data: {ds.token_stats(held_tokens).describe()}")
    model = add_lora(loaded.model, options)
    cases = [ds.prompt_case(example, tokenizer) for example in held[: options.eval_prompts]]
    pad_id = int(tokenizer.pad_token_id)
    report = EvalReport(held_out_loss(model, held_tokens, pad_id, options.batch_size))
    before = greedy_answers(model, tokenizer, cases)
    trainer = Trainer(model, train_tokens, options, paths.checkpoints, pad_id)
    result = trainer.run(should_stop, reporter.step, resume=resume)
    if result.stopped:
        return Outcome("stopped", None, f"stopped at step {result.steps}; resume with --resume")
    report.loss_after = held_out_loss(model, held_tokens, pad_id, options.batch_size)
    after = greedy_answers(model, tokenizer, cases)
    report.answers = [
        Answer(case.line, case.prompt, case.expected, b, a)
        for case, b, a in zip(cases, before, after, strict=True)
    ]
    reporter.evaluation(report)
    if not report.improved and not spec.force:
        return Outcome("rejected", None, _rejection(report), report)
    export_gguf_lora(model, loaded.gguf_path, paths.adapter)
    counts = {"train_examples": len(train), "eval_examples": len(held)}
    record = lineage_record(
        spec,
        base_model,
        dataset_digest=ds.file_digest(spec.data_path),
        counts=counts,
        dtype=dtype,
        steps=result.steps,
        evaluation=report.to_dict(),
        job_id=job_id,
    )
    registered = register(store, spec, base_model, paths.adapter, record, tokenizer, examples)
    return Outcome("succeeded", str(registered.name), f"registered {registered.name}", report)


def _rejection(report: EvalReport) -> str:
    if report.loss_before is None:
        return "no held-out examples to show an improvement; not registered (use --force)"
    return (
        f"held-out loss did not improve ({report.loss_before:.4f} → {report.loss_after:.4f}); "
        "not registered (use --force to register anyway)"
    )


def register(
    store: Store,
    spec: JobSpec,
    base: LocalModel,
    adapter: Path,
    record: dict[str, Any],
    tokenizer: Any,
    examples: list[ds.Example],
) -> LocalModel:
    """The adapter as a new model over the base's blob, with the lineage layer."""
    check_name(store, spec)
    uses_chat = any(example.messages for example in examples)
    template = ds.FALLBACK_CHAT_TEMPLATE if uses_chat and not tokenizer.chat_template else None
    recipe = Recipe(base=str(base.name), adapters=[adapter], template=template)
    return create_model(
        store, spec.name, recipe, extra_layers=[(MediaType.LINEAGE, lineage_json(record))]
    )
