"""Fine-tuning jobs: a folder each under ``HEARTH_HOME/finetune/jobs/<id>``, run one at a time.

A job's folder holds ``spec.json`` (what to do), ``status.json`` (replaced atomically at each
step), ``loss.jsonl`` (one point a step), ``log.txt``, ``eval.json``, ``checkpoints/`` and, once
trained, ``adapter.gguf``. Any process can read a job, or cancel it by creating its ``cancel``
file, which the training loop checks between steps (it then saves a checkpoint).

Training takes every core it is given, and llama.cpp decoding beside it on the same cores slows
down a hundredfold (measured on 2 cores), so at most ``HEARTH_FINETUNE_JOBS`` jobs (default 1)
train on a machine at once: each holds one of that many ``flock`` slots, and a job that finds
none free waits, "queued". ``hearth finetune --detach`` and ``POST /api/finetune`` start the job
in its own process (``python -m hearth.finetune.worker``), so the server never trains in-process.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.errors import HearthError, JobNotFoundError
from hearth.finetune.evaluate import EvalReport
from hearth.finetune.options import JobSpec
from hearth.finetune.pipeline import JobPaths, Outcome, run_finetune
from hearth.finetune.train import StepReport

FINISHED = frozenset({"succeeded", "rejected", "failed", "cancelled"})
RESUMABLE = frozenset({"stopped", "failed", "cancelled", "interrupted"})


@dataclass(frozen=True)
class JobStatus:
    id: str
    name: str
    base: str
    status: str  # queued, running, succeeded, rejected, stopped, cancelled, failed, interrupted
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eta_seconds: float | None = None
    created: str = ""
    finished: str | None = None
    message: str = ""
    model: str | None = None
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class JobStore:
    """The jobs of one HEARTH_HOME (no I/O on construction)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.home / "finetune" / "jobs"
        self.cache_dir = settings.home / "finetune" / "hf"

    def create(self, spec: JobSpec) -> str:
        job_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        folder = self.root / job_id
        folder.mkdir(parents=True)
        _write_json(folder / "spec.json", spec.to_dict())
        status = JobStatus(job_id, spec.name, spec.base, "queued", created=_now())
        _write_json(folder / "status.json", status.to_dict())
        return job_id

    def folder(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise JobNotFoundError(f"no fine-tuning job {job_id!r}")
        folder = self.root / job_id
        if not (folder / "status.json").is_file():
            raise JobNotFoundError(f"no fine-tuning job {job_id!r}")
        return folder

    def spec(self, job_id: str) -> JobSpec:
        return JobSpec.from_dict(json.loads((self.folder(job_id) / "spec.json").read_text()))

    def status(self, job_id: str) -> JobStatus:
        data = json.loads((self.folder(job_id) / "status.json").read_text())
        status = JobStatus(**data)
        if status.status in ("running", "queued") and status.pid and not _alive(status.pid):
            return JobStatus(**{**data, "status": "interrupted", "message": "the process died"})
        return status

    def list(self) -> builtins.list[JobStatus]:
        if not self.root.is_dir():
            return []
        ids = sorted(p.name for p in self.root.iterdir() if (p / "status.json").is_file())
        return [self.status(job_id) for job_id in ids]

    def losses(self, job_id: str) -> builtins.list[dict[str, float]]:
        path = self.folder(job_id) / "loss.jsonl"
        if not path.is_file():
            return []
        points = []
        for line in path.read_text().splitlines():
            try:
                points.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short when the job was killed
        return points

    def log_tail(self, job_id: str, lines: int = 50) -> builtins.list[str]:
        path = self.folder(job_id) / "log.txt"
        return path.read_text().splitlines()[-lines:] if path.is_file() else []

    def evaluation(self, job_id: str) -> dict[str, Any] | None:
        path = self.folder(job_id) / "eval.json"
        return dict(json.loads(path.read_text())) if path.is_file() else None

    def cancel(self, job_id: str) -> JobStatus:
        """Ask a job to stop (it saves a checkpoint first); a finished job is left as it is."""
        status = self.status(job_id)
        if status.status in FINISHED:
            return status
        (self.folder(job_id) / "cancel").touch()
        if status.status in ("queued", "interrupted", "stopped") and not _alive(status.pid):
            self._update(job_id, status="cancelled", finished=_now(), message="cancelled")
        return self.status(job_id)

    def resumable(self, name: str) -> str | None:
        """The newest job for model ``name`` that stopped with a checkpoint to continue from."""
        for status in reversed(self.list()):
            has_checkpoint = (self.root / status.id / "checkpoints" / "latest").is_file()
            if status.name == name and status.status in RESUMABLE and has_checkpoint:
                return status.id
        return None

    def spawn(self, job_id: str, *, resume: bool = False) -> int:
        """Run the job in a detached worker process; returns its pid."""
        folder = self.folder(job_id)
        command = [sys.executable, "-m", "hearth.finetune.worker", str(self.settings.home), job_id]
        if resume:
            command.append("--resume")
        with (folder / "log.txt").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        # reap it when it ends, so a long-lived server collects no zombies
        threading.Thread(target=process.wait, name=f"reap-{job_id}", daemon=True).start()
        self._update(job_id, pid=process.pid)
        return process.pid

    def run(
        self,
        job_id: str,
        *,
        resume: bool = False,
        stop: Callable[[], bool] = lambda: False,
        echo: Any | None = None,
    ) -> JobStatus:
        """Run the job in this process (waiting for a free slot first); returns its last status.
        ``echo`` (a Reporter) also hears every event, for a terminal."""
        from hearth.store import Store

        folder = self.folder(job_id)
        cancel_file = folder / "cancel"
        cancel_file.unlink(missing_ok=True)

        def should_stop() -> bool:
            return stop() or cancel_file.exists()

        self._update(job_id, pid=os.getpid(), status="queued", message="waiting for a free slot")
        with self._slot(should_stop) as got_slot:
            if not got_slot:
                self._update(job_id, status="cancelled", finished=_now(), message="cancelled")
                return self.status(job_id)
            self._update(job_id, status="running", message="")
            _limit_threads(self.settings.finetune_threads)
            reporter = _JobReporter(self, job_id, echo)
            try:
                outcome = run_finetune(
                    Store(self.settings),
                    self.spec(job_id),
                    JobPaths(folder),
                    reporter,
                    should_stop,
                    cache_dir=self.cache_dir,
                    resume=resume,
                    job_id=job_id,
                )
            except HearthError as error:
                reporter.log(f"error: {error}")
                self._update(job_id, status="failed", finished=_now(), message=str(error))
                raise
            except BaseException as error:
                reporter.log(f"error: {type(error).__name__}: {error}")
                self._update(job_id, status="failed", finished=_now(), message=repr(error))
                raise
            self._finish(job_id, outcome, cancelled=cancel_file.exists())
        return self.status(job_id)

    def _finish(self, job_id: str, outcome: Outcome, *, cancelled: bool) -> None:
        status = "cancelled" if outcome.status == "stopped" and cancelled else outcome.status
        finished = _now() if status in FINISHED else None
        self._update(
            job_id, status=status, finished=finished, message=outcome.message, model=outcome.model
        )
        self._log(job_id, outcome.message)

    @contextlib.contextmanager
    def _slot(self, should_stop: Callable[[], bool]) -> Iterator[bool]:
        """One of HEARTH_FINETUNE_JOBS machine-wide slots (flock); False if stopped waiting."""
        slots = self.settings.home / "finetune" / "slots"
        slots.mkdir(parents=True, exist_ok=True)
        while True:
            for index in range(self.settings.finetune_jobs):
                handle = (slots / f"slot-{index}.lock").open("w")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                try:
                    yield True
                finally:
                    handle.close()
                return
            if should_stop():
                yield False
                return
            time.sleep(1.0)

    def _update(self, job_id: str, **changes: Any) -> None:
        path = self.folder(job_id) / "status.json"
        data = json.loads(path.read_text())
        data.update(changes)
        _write_json(path, data)

    def _log(self, job_id: str, message: str) -> None:
        with (self.folder(job_id) / "log.txt").open("a") as log:
            log.write(f"{_now()} {message}\n")


class _JobReporter:
    """Writes a job's events to its folder, and passes them on to ``echo`` if given."""

    def __init__(self, jobs: JobStore, job_id: str, echo: Any | None) -> None:
        self.jobs, self.job_id, self.echo = jobs, job_id, echo
        self.folder = jobs.folder(job_id)

    def log(self, message: str) -> None:
        self.jobs._log(self.job_id, message)
        if self.echo is not None:
            self.echo.log(message)

    def step(self, report: StepReport) -> None:
        point = {"step": report.step, "loss": report.loss, "seconds": report.step_seconds}
        with (self.folder / "loss.jsonl").open("a") as handle:
            handle.write(json.dumps(point) + "\n")
        self.jobs._update(
            self.job_id,
            step=report.step,
            total_steps=report.total_steps,
            loss=report.loss,
            eta_seconds=report.eta_seconds,
        )
        if self.echo is not None:
            self.echo.step(report)

    def evaluation(self, report: EvalReport) -> None:
        _write_json(self.folder / "eval.json", report.to_dict())
        loss = f"{report.loss_before} → {report.loss_after}"
        self.log(f"held-out loss {loss}")
        if self.echo is not None:
            self.echo.evaluation(report)


def _limit_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet is a zombie: dead all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(path: Path, data: object) -> None:
    temp = path.with_name(f".tmp-{path.name}")
    temp.write_text(json.dumps(data, indent=1))
    temp.replace(path)
