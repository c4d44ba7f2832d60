"""Store fixtures beside the shared ones in tests/conftest.py (settings, tiny_model, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf
from hearth.store import Store


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings)


@pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose license and template differ from tiny_model's defaults."""
    spec = TinyModelSpec(seed=1, name="tiny-chat", license="mit", chat_template="{{ messages }}")
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny-chat.gguf", spec)
