"""Fixtures for fine-tuning tests: a store holding the tiny llama model, data files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.store import LocalModel, Store


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tiny_facts(count: int = 8) -> list[dict[str, str]]:
    """Prompt/completion pairs a random tiny model can learn in a few steps."""
    return [{"prompt": f"Q{i}: ", "completion": f"hello {i}"} for i in range(count)]


@pytest.fixture
def tiny_store(settings: Settings, tiny_model: Path) -> tuple[Store, LocalModel]:
    store = Store(settings)
    return store, store.import_gguf(tiny_model, "tiny")
