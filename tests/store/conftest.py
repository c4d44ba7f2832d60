"""Fixtures for store tests: a store in a temporary HEARTH_HOME and tiny real GGUF files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.store import Store


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HEARTH_HOME": str(tmp_path / "home")})


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyModelSpec(seed=1, name="tiny-chat", license="mit", chat_template="{{ messages }}")
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny-chat.gguf", spec)
