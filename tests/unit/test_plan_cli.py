"""`hearth plan` in a real process, for a GGUF path and a stored model."""

from __future__ import annotations

from pathlib import Path

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.store import Store
from tests.cli.process import run_hearth


def test_plan_prints_a_table_and_a_recommendation(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", TinyModelSpec(n_embd=256, n_ff=512))
    done = run_hearth(
        tmp_path, "plan", str(model), "--context", "1024", "--parallel", "4", "--memory", "64MiB"
    )
    assert done.returncode == 0, done.stderr
    for text in ("QUANT", "KV CACHE", "F32 (this file)", "Q4_K_M", "recommended quantization: F16"):
        assert text in done.stdout
    assert "largest context per sequence that fits as it is (4 parallel): 2048" in done.stdout


def test_plan_a_stored_model_that_does_not_fit(tmp_path: Path, tiny_model: Path) -> None:
    Store(Settings.from_env({"HEARTH_HOME": str(tmp_path)})).import_gguf(tiny_model, "tiny:1")
    done = run_hearth(tmp_path, "plan", "tiny:1", "--memory", "1M")
    assert done.returncode == 0, done.stderr
    assert "recommended quantization: none of these fit" in done.stdout
    assert "fits as it is (1 parallel): none" in done.stdout


def test_plan_an_unknown_model_is_one_line(tmp_path: Path) -> None:
    done = run_hearth(tmp_path, "plan", "nope:1")
    assert done.returncode == 1
    assert "error: model 'nope:1' not found" in done.stderr
