"""``hearth finetune`` (LoRA/QLoRA → GGUF adapter → a model in the store) and ``hearth jobs``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from hearth.cli.console import err, out
from hearth.config import get_settings
from hearth.errors import FinetuneError
from hearth.finetune.evaluate import EvalReport
from hearth.finetune.jobs import JobStatus, JobStore
from hearth.finetune.options import ALL_LINEAR, JobSpec, TrainOptions
from hearth.finetune.pipeline import preflight
from hearth.finetune.train import StepReport
from hearth.store import Store


def finetune(
    base: Annotated[str, typer.Argument(help="Base model in the store, e.g. gemma3:270m")],
    data: Annotated[Path, typer.Option(help="Training data: JSONL file or dataset folder")],
    name: Annotated[str, typer.Option(help="Name of the fine-tuned model")],
    method: Annotated[str, typer.Option(help="lora, or qlora (4-bit NF4 base)")] = "lora",
    rank: Annotated[int, typer.Option(help="LoRA rank")] = 16,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha (default 2 × rank)")] = None,
    dropout: Annotated[float, typer.Option(help="LoRA dropout")] = 0.05,
    targets: Annotated[
        str, typer.Option(help="Comma-separated module names, or all-linear")
    ] = ALL_LINEAR,
    epochs: Annotated[int, typer.Option(help="Passes over the data")] = 3,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps (0: by epochs)")] = 0,
    lr: Annotated[float, typer.Option(help="Learning rate")] = 2e-4,
    batch_size: Annotated[int, typer.Option(help="Examples per micro-batch")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per step")] = 1,
    max_seq_len: Annotated[int, typer.Option(help="Longest example, in tokens")] = 1024,
    eval_file: Annotated[
        Path | None, typer.Option("--eval", help="Held-out data (instead of --eval-split)")
    ] = None,
    eval_split: Annotated[float, typer.Option(help="Share of data held out")] = 0.1,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints")] = 50,
    dtype: Annotated[str, typer.Option(help="auto, bf16 or fp32")] = "auto",
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade time for memory")] = False,
    rslora: Annotated[bool, typer.Option(help="Rank-stabilised LoRA scaling")] = False,
    seed: Annotated[int, typer.Option(help="Seed for data order and initialisation")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the last stopped job for --name")] = False,
    detach: Annotated[bool, typer.Option(help="Run as a background job")] = False,
    force: Annotated[
        bool, typer.Option(help="Register without improvement; replace an existing --name")
    ] = False,
    merge: Annotated[
        bool, typer.Option(help="Merge the adapter into the base: store a full model")
    ] = False,
    quantize: Annotated[
        str | None, typer.Option(help="With --merge: quantize it (Q4_K_M, Q8_0, ...)")
    ] = None,
) -> None:
    """Fine-tune BASE with LoRA or QLoRA on your data, evaluate it on held-out examples, and
    register the adapter as model NAME (served with `hearth run NAME`); with --merge, the
    merged weights as a full model instead. Ctrl-C saves a checkpoint; --resume continues
    from it."""
    jobs = JobStore(get_settings())
    if resume:
        job_id = jobs.resumable(name)
        if job_id is None:
            raise FinetuneError(f"no stopped fine-tune of {name} with a checkpoint to resume")
        err.print(f"[dim]resuming job {job_id} with its own settings[/]")
    else:
        options = TrainOptions(
            method=method,
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            targets=tuple(t.strip() for t in targets.split(",")),
            epochs=epochs,
            max_steps=max_steps,
            lr=lr,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_seq_len=max_seq_len,
            eval_split=eval_split,
            checkpoint_every=checkpoint_every,
            seed=seed,
            dtype=dtype,
            gradient_checkpointing=gradient_checkpointing,
            rslora=rslora,
        )
        eval_data = str(eval_file.resolve()) if eval_file else None
        spec = JobSpec(base, str(data.resolve()), name, options, eval_data, force, merge, quantize)
        preflight(Store(jobs.settings), spec)
        job_id = jobs.create(spec)
    if detach:
        pid = jobs.spawn(job_id, resume=resume)
        out.print(f"job {job_id} started (pid {pid}); follow it with: hearth jobs {job_id}")
        return
    _run_in_foreground(jobs, job_id, resume)


def _run_in_foreground(jobs: JobStore, job_id: str, resume: bool) -> None:
    stop = threading.Event()

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: give up at once
        stop.set()
        err.print("[yellow]stopping after this step; saving a checkpoint…[/]")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with _TerminalReporter() as echo:
            status = jobs.run(job_id, resume=resume, stop=stop.is_set, echo=echo)
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_outcome(status)


def _print_outcome(status: JobStatus) -> None:
    out.print(f"job {status.id}: {status.status}: {status.message}")
    if status.status in ("stopped", "cancelled"):
        raise typer.Exit(130)
    if status.status != "succeeded":
        raise typer.Exit(1)


class _TerminalReporter:
    """A progress bar with loss, step time and time left; the before/after table at the end."""

    def __init__(self) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[step_time]} s/step"),
            TimeRemainingColumn(),
        )
        self.progress = Progress(*columns, console=err)
        self.task: TaskID | None = None

    def __enter__(self) -> _TerminalReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def log(self, message: str) -> None:
        err.print(f"[dim]{message}[/]", highlight=False)

    def step(self, report: StepReport) -> None:
        loss, step_time = f"{report.loss:.4f}", f"{report.step_seconds:.2f}"
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(
                "training", total=report.total_steps, loss=loss, step_time=step_time
            )
        self.progress.update(self.task, completed=report.step, loss=loss, step_time=step_time)

    def evaluation(self, report: EvalReport) -> None:
        self.progress.stop()
        before, after = report.loss_before, report.loss_after
        if before is not None and after is not None:
            out.print(f"held-out loss: {before:.4f} → {after:.4f}")
        if not report.answers:
            return
        table = Table("prompt", "expected", "before", "after", show_lines=True)
        for answer in report.answers:
            table.add_row(answer.prompt[-80:], answer.expected, answer.before, answer.after)
        out.print(table)


def jobs(
    job_id: Annotated[str | None, typer.Argument(help="A job to show")] = None,
    cancel: Annotated[bool, typer.Option(help="Cancel the job (it saves a checkpoint)")] = False,
) -> None:
    """List fine-tuning jobs, show one (status, loss curve, log), or cancel one."""
    store = JobStore(get_settings())
    if job_id is None:
        _list_jobs(store.list())
        return
    status = store.cancel(job_id) if cancel else store.status(job_id)
    out.print(f"job {status.id}: {status.name} from {status.base}: {status.status}")
    if status.total_steps:
        out.print(f"step {status.step}/{status.total_steps}, loss {status.loss}")
    points = store.losses(job_id)
    if points:
        curve = " ".join(f"{point['loss']:.3f}" for point in points[-20:])
        out.print(f"loss (last {min(20, len(points))} steps): {curve}")
    if status.message:
        out.print(status.message)
    for line in store.log_tail(job_id, 10):
        err.print(f"[dim]{line}[/]", highlight=False)


def _list_jobs(statuses: list[JobStatus]) -> None:
    if not statuses:
        out.print("no fine-tuning jobs")
        return
    table = Table("ID", "NAME", "BASE", "STATUS", "STEP", "LOSS", box=None)
    for status in statuses:
        loss = f"{status.loss:.4f}" if status.loss is not None else ""
        step = f"{status.step}/{status.total_steps}" if status.total_steps else ""
        table.add_row(status.id, status.name, status.base, status.status, step, loss)
    out.print(table)
