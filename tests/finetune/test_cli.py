"""`hearth finetune` and `hearth jobs` in a child process: refusals, Ctrl-C saves a checkpoint,
a killed job resumes from its checkpoint, --detach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hearth.config import Settings
from hearth.finetune.jobs import JobStore
from hearth.store import LocalModel, Store
from tests.finetune.conftest import tiny_facts, write_jsonl

TRAIN = ["--rank", "4", "--lr", "1e-2", "--batch-size", "4", "--dropout", "0", "--dtype", "fp32"]


def _cli(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_THREADS": "2", "COLUMNS": "200"}
    command = [sys.executable, "-m", "tests.finetune.cli_app", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def _wait_for_steps(jobs: JobStore, steps: int, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in jobs.list():
            if status.step >= steps:
                return status.id
        time.sleep(0.2)
    raise AssertionError(f"no job reached step {steps}")


def test_bad_options_and_data_are_refused_with_one_line(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "completion": ""}\n')
    code, text = _finish(_cli(settings.home, "finetune", "tiny", "--data", str(bad), "--name", "a"))
    assert code == 1 and "line 1: 'completion' is missing or empty" in text
    data = write_jsonl(tmp_path / "d.jsonl", tiny_facts(4))
    args = ["finetune", "tiny", "--data", str(data), "--name", "a", "--rank", "0"]
    code, text = _finish(_cli(settings.home, *args))
    assert code == 1 and "invalid rank=0" in text


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", tiny_facts(8))
    args = ["finetune", "tiny", "--data", str(data), "--name", "cc", "--max-steps", "60", *TRAIN]
    process = _cli(settings.home, *args, "--checkpoint-every", "1000")
    jobs = JobStore(settings)
    job_id = _wait_for_steps(jobs, 3)
    process.send_signal(signal.SIGINT)
    code, text = _finish(process)
    assert code == 130, text
    stopped = jobs.status(job_id)
    assert stopped.status == "stopped" and "--resume" in stopped.message
    checkpoint = json.loads((jobs.folder(job_id) / "checkpoints" / "latest").read_text())
    assert checkpoint["checkpoint"] == f"step-{stopped.step}"
    code, text = _finish(
        _cli(settings.home, "finetune", "tiny", "--data", str(data), "--name", "cc", "--resume"),
        timeout=240,
    )
    assert code == 0, text
    points = jobs.losses(job_id)
    assert [p["step"] for p in points] == list(range(1, 61))  # no step trained twice
    assert jobs.status(job_id).status == "succeeded"


def test_a_killed_detached_job_resumes_from_its_last_checkpoint(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", tiny_facts(8))
    args = ["finetune", "tiny", "--data", str(data), "--name", "kd", "--max-steps", "60", *TRAIN]
    code, text = _finish(_cli(settings.home, *args, "--checkpoint-every", "5", "--detach"))
    assert code == 0 and "started" in text, text
    jobs = JobStore(settings)
    job_id = _wait_for_steps(jobs, 12)
    pid = jobs.status(job_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while jobs.status(job_id).status != "interrupted" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jobs.status(job_id).status == "interrupted"
    latest = json.loads((jobs.folder(job_id) / "checkpoints" / "latest").read_text())
    saved = int(latest["checkpoint"].removeprefix("step-"))
    assert saved % 5 == 0 and saved >= 10
    code, text = _finish(_cli(settings.home, "jobs"))
    assert code == 0 and job_id in text and "interrupted" in text
    before = len(jobs.losses(job_id))
    resumed_args = ["finetune", "tiny", "--data", str(data), "--name", "kd", "--resume"]
    code, text = _finish(_cli(settings.home, *resumed_args), timeout=240)
    assert code == 0, text
    steps = [p["step"] for p in jobs.losses(job_id)]
    assert steps[:before] == list(range(1, before + 1)) and before >= saved
    assert steps[before:] == list(range(saved + 1, 61))  # from the checkpoint, not from 1
    assert jobs.status(job_id).status == "succeeded"
