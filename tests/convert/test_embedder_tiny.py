"""The Embedder on tiny models: a converted random BERT (encoder) and the tiny llama (decoder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hearth.convert import convert_hf_to_gguf
from hearth.engine.embeddings import Embedder, EmbedderConfig, Pooling
from hearth.errors import ContextOverflowError, EngineError, ModelLoadError, ValidationError
from tests.bert_helpers import SAMPLE_TEXTS, cosines

TEXTS = [f"{word} " * n for n in (1, 3, 9, 20) for word in ("cat", "the dog ran", "mat!")]


@pytest.fixture(scope="module")
def bert_gguf(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_hf_to_gguf(tiny_bert_dir, tmp_path_factory.mktemp("gguf") / "bert.gguf").path


@pytest.fixture(scope="module")
def embedder(bert_gguf: Path) -> Iterator[Embedder]:
    with Embedder(bert_gguf, EmbedderConfig(n_threads=2)) as embedder:
        yield embedder


def test_shape_and_unit_length(embedder: Embedder) -> None:
    vectors = embedder.embed(SAMPLE_TEXTS)
    assert embedder.dimensions == 32
    assert embedder.max_tokens == 64  # the model's max_position_embeddings
    assert [len(v) for v in vectors] == [32] * len(SAMPLE_TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert embedder.embed([]) == []


def test_normalize_false_gives_the_raw_pooled_vector(embedder: Embedder) -> None:
    raw = np.array(embedder.embed(["the cat sat"], normalize=False)[0])
    unit = np.array(embedder.embed(["the cat sat"])[0])
    assert abs(np.linalg.norm(raw) - 1.0) > 0.01
    assert np.allclose(raw / np.linalg.norm(raw), unit)


@pytest.mark.parametrize(("max_seqs", "batch_tokens"), [(1, 64), (3, 64), (16, 100), (5, 2048)])
def test_batching_does_not_change_vectors(
    bert_gguf: Path, max_seqs: int, batch_tokens: int
) -> None:
    config = EmbedderConfig(max_seqs=max_seqs, batch_tokens=batch_tokens, n_threads=2)
    with Embedder(bert_gguf, config) as embedder:
        together = embedder.embed(TEXTS)
        alone = [embedder.embed([text])[0] for text in TEXTS]
    assert min(cosines(together, alone)) >= 0.9999


def test_inputs_are_validated_before_any_work(embedder: Embedder) -> None:
    with pytest.raises(ValidationError) as caught:
        embedder.embed(["fine", ""])
    assert caught.value.param == "input[1]"
    too_long = "cat " * 100
    with pytest.raises(ContextOverflowError, match=r"input\[2\] is 102 tokens long; .* at most 64"):
        embedder.embed(["fine", "also fine", too_long])
    assert embedder.count_tokens(too_long) == 102
    with pytest.raises(ValidationError, match="not one string"):
        embedder.embed("a bare string")  # type: ignore[arg-type]


def test_batch_tokens_caps_a_text(bert_gguf: Path) -> None:
    with Embedder(bert_gguf, EmbedderConfig(batch_tokens=8, n_threads=2)) as embedder:
        assert embedder.max_tokens == 8
        assert len(embedder.embed(["the cat sat"])) == 1  # 5 tokens
        with pytest.raises(ContextOverflowError, match="at most 8"):
            embedder.embed(["the cat sat on the mat."])  # 9 tokens


def test_closed_embedder(bert_gguf: Path) -> None:
    embedder = Embedder(bert_gguf, EmbedderConfig(n_threads=2))
    embedder.close()
    embedder.close()  # twice is fine
    with pytest.raises(EngineError, match="closed"):
        embedder.embed(["cat"])


@pytest.mark.parametrize(
    ("field", "value"), [("max_seqs", 0), ("max_seqs", 257), ("batch_tokens", 0), ("n_threads", -1)]
)
def test_config_is_validated(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as caught:
        EmbedderConfig(**{field: value})  # type: ignore[arg-type]
    assert caught.value.param == field


def test_decoder_model_needs_a_pooling_type(tiny_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="declares no pooling type"):
        Embedder(tiny_model, EmbedderConfig(n_threads=2))


@pytest.mark.parametrize("pooling", [Pooling.MEAN, Pooling.LAST])
def test_decoder_model_clears_its_memory_between_batches(
    tiny_model: Path, pooling: Pooling
) -> None:
    config = EmbedderConfig(pooling=pooling, max_seqs=3, batch_tokens=600, n_threads=2)
    with Embedder(tiny_model, config) as embedder:
        together = embedder.embed(TEXTS)
        alone = [embedder.embed([text])[0] for text in TEXTS]
        again = embedder.embed(TEXTS)
    assert min(cosines(together, alone)) >= 0.9999
    assert np.allclose(together, again)
