"""One fine-tune from data to a registered model: validate, load, evaluate, train, evaluate,
gate, export (or merge, with ``--merge``), register (with lineage). Everything a user can get
wrong is checked before the base model is loaded (name taken, bad data lines, a base that
cannot be trained or merged)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hearth.errors import FinetuneError, ModelNotFoundError
from hearth.finetune import data as ds
from hearth.finetune.base import HF_SOURCE, LoadedBase, check_trainable, hf_source, load_base
from hearth.finetune.evaluate import Answer, EvalReport, greedy_answers, held_out_loss
from hearth.finetune.export import export_gguf_lora
from hearth.finetune.lineage import lineage_json, lineage_record
from hearth.finetune.merge import (
    MERGEABLE,
    MergedModel,
    merge_to_gguf,
    on_full_precision,
    out_type,
    register_merged,
)
from hearth.finetune.options import JobSpec
from hearth.finetune.train import StepReport, Trainer, add_lora, resolve_dtype
from hearth.modelfile.create import create_model
from hearth.modelfile.parse import Recipe
from hearth.store import LocalModel, MediaType, Progress, Store


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


def check_base(store: Store, base: LocalModel, *, merge: bool = False) -> None:
    """Trainable here (and mergeable, for ``merge``), and not denied by the license policy
    (hearth.toml [policy]): the fine-tune inherits the base's terms."""
    from hearth.license import check_serving
    from hearth.license.report import policy_of

    check_trainable(base)
    arch = base.info.architecture
    if merge and arch not in MERGEABLE:
        raise FinetuneError(
            f"{base.name} is a {arch} model; a merged {arch} model cannot be converted back to "
            f"GGUF here (--merge works for {', '.join(sorted(MERGEABLE))}); drop --merge to "
            "store an adapter"
        )
    check_serving(store, base, policy_of(store.settings))


def preflight(store: Store, spec: JobSpec) -> None:
    """The checks that need no model loaded: base trainable and allowed, name free, every data
    line good."""
    check_base(store, store.ensure(spec.base), merge=spec.merge)
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
    check_base(store, base_model, merge=spec.merge)
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
    reporter.log(_loaded_from(base_model, loaded))
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
    output: Path | MergedModel
    if spec.merge:
        output = _merge(store, spec, base_model, model, loaded, paths, reporter, dtype)
    else:
        output = export_gguf_lora(model, loaded.gguf_path, paths.adapter)
    try:
        record = lineage_record(
            spec,
            base_model,
            dataset_digest=ds.file_digest(spec.data_path),
            counts={"train_examples": len(train), "eval_examples": len(held)},
            dtype=dtype,
            steps=result.steps,
            evaluation=report.to_dict(),
            job_id=job_id,
        )
        record["base"]["loaded_from"] = loaded.source
        record["merged"] = spec.merge
        if isinstance(output, MergedModel):
            record["quantization"] = output.quantization
        registered = register(store, spec, base_model, output, record, tokenizer, examples)
    finally:
        if isinstance(output, MergedModel):
            output.path.unlink(missing_ok=True)  # adopted into the store unless that failed
    return Outcome("succeeded", str(registered.name), f"registered {registered.name}", report)


def _loaded_from(base: LocalModel, loaded: LoadedBase) -> str:
    if loaded.source == HF_SOURCE:
        return f"base loaded from its Hugging Face source ({len(hf_source(base))} files)"
    return "base loaded from its GGUF (dequantized)"


def _merge(
    store: Store,
    spec: JobSpec,
    base: LocalModel,
    model: Any,
    loaded: LoadedBase,
    paths: JobPaths,
    reporter: Reporter,
    dtype: str,
) -> MergedModel:
    """The trained adapter merged into the base, as a GGUF ready for the store (--merge)."""
    import uuid

    options = spec.options
    if options.method == "qlora":  # merge into full-precision weights, not into NF4
        reporter.log("loading the base at full precision to merge into")
        # (cache_dir serves QLoRA loads only: unused for this one)
        full = load_base(base, paths.work, dtype=dtype, method="lora", cache_dir=paths.work)
        model = on_full_precision(model, full.model, options)
    reporter.log("merging the adapter into the base weights")
    store.blobs.root.mkdir(parents=True, exist_ok=True)
    return merge_to_gguf(
        model,
        loaded.tokenizer,
        paths.work,
        store.blobs.root / f".tmp-merge-{uuid.uuid4().hex}.gguf",
        name=spec.name,
        outtype=out_type(base),
        quantize=spec.quantize,
        threads=store.threads,
        progress_for=lambda label: logged_progress(reporter, label),
    )


def logged_progress(reporter: Reporter, label: str, steps: int = 10) -> Progress:
    """A progress callback that logs each tenth: the job's log and the terminal show it."""
    logged = [-1]

    def update(done: int, total: int | None) -> None:
        if not total:
            return
        share = min(steps, done * steps // total)
        if share > logged[0]:
            logged[0] = share
            reporter.log(f"{label}: {share * 100 // steps}%")

    return update


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
    output: Path | MergedModel,
    record: dict[str, Any],
    tokenizer: Any,
    examples: list[ds.Example],
) -> LocalModel:
    """The adapter as a new model over the base's blob, or the merged model (``--merge``) as
    a model of its own; either way with the lineage layer and the base's license terms."""
    check_name(store, spec)
    uses_chat = any(example.messages for example in examples)
    template = ds.FALLBACK_CHAT_TEMPLATE if uses_chat and not tokenizer.chat_template else None
    lineage = lineage_json(record)
    if isinstance(output, MergedModel):
        return register_merged(store, spec.name, base, output, template=template, lineage=lineage)
    recipe = Recipe(base=str(base.name), adapters=[output], template=template)
    return create_model(store, spec.name, recipe, extra_layers=[(MediaType.LINEAGE, lineage)])
