"""POST /v1/rerank through a real server: a tiny converted BERT, and the real all-MiniLM-L6-v2."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hearth.config import Settings
from hearth.engine.embeddings import Embedder, EmbedderConfig
from hearth.server.rerank import ranked, similarity_scores
from hearth.store import Store
from tests.bert_helpers import write_tiny_bert
from tests.server.live_server import live_server, server_settings

BERT = "tiny-bert:latest"
RERANKER = "tiny-reranker:latest"
MINILM = "all-minilm:l6-v2"
QUERY = "the cat sat on the mat"
DOCUMENTS: list[Any] = ["a good day", {"text": "the cat sat on the mat"}, "the dog ran", "night"]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random BertForSequenceClassification with one label: a tiny cross-encoder reranker."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    root = write_tiny_bert(tmp_path_factory.mktemp("hf") / "tiny-reranker", seed=3)
    (root / "model.safetensors").unlink()
    shutil.rmtree(root / "1_Pooling")  # a cross-encoder does not pool into a vector
    config = BertConfig.from_pretrained(root, num_labels=1)
    torch.manual_seed(3)
    BertForSequenceClassification(config).eval().save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path, cross_encoder_dir: Path
) -> Iterator[tuple[str, Path]]:
    settings = server_settings(tmp_path_factory.mktemp("rerank-home"))
    bert = Store(settings).import_hf_dir(tiny_bert_dir, "tiny-bert")
    Store(settings).import_hf_dir(cross_encoder_dir, "tiny-reranker")
    with live_server(settings) as url:
        yield url, bert.model_path


def _rerank(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/rerank", json=body, timeout=60)


def test_documents_are_ranked_by_cosine_similarity(server: tuple[str, Path]) -> None:
    url, model_path = server
    response = _rerank(url, model=BERT, query=QUERY, documents=DOCUMENTS)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == BERT and body["id"].startswith("rerank-")
    results = body["results"]
    texts = [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]
    with Embedder(model_path, EmbedderConfig(n_threads=2)) as embedder:
        vectors = np.array(embedder.embed([QUERY, *texts]))
        tokens = sum(embedder.count_tokens(t) for t in [QUERY, *texts])
    expected = vectors[1:] @ vectors[0]
    assert [r["index"] for r in results] == list(np.argsort(-expected, kind="stable"))
    scores = [r["relevance_score"] for r in results]
    assert np.allclose(scores, sorted(expected, reverse=True), atol=1e-6)
    assert results[0]["index"] == 1 and scores[0] == pytest.approx(1.0, abs=1e-6)
    assert all("document" not in r for r in results)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_a_cross_encoder_scores_each_pair_as_transformers_does(
    server: tuple[str, Path], cross_encoder_dir: Path
) -> None:
    """The converted classifier head and rank pooling give the model's own logits. llama.cpp
    gives every token type 0, so the reference does too."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    url, _ = server
    texts = [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]
    body = _rerank(url, model=RERANKER, query=QUERY, documents=DOCUMENTS, top_n=3).json()
    tokenizer = AutoTokenizer.from_pretrained(cross_encoder_dir)
    model = BertForSequenceClassification.from_pretrained(cross_encoder_dir).eval()
    encoded = tokenizer([QUERY] * len(texts), texts, padding=True, return_tensors="pt")
    encoded["token_type_ids"] = torch.zeros_like(encoded["token_type_ids"])
    with torch.no_grad():
        expected = model(**encoded).logits[:, 0].numpy()
    order = list(np.argsort(-expected, kind="stable"))[:3]
    assert [r["index"] for r in body["results"]] == order
    scores = [r["relevance_score"] for r in body["results"]]
    assert np.allclose(scores, expected[order], rtol=0.01)  # F16 weights: within 1%
    assert body["usage"]["total_tokens"] > 0
    too_long = _rerank(url, model=RERANKER, query=QUERY * 3, documents=["cat " * 40])
    assert too_long.status_code == 400 and "documents[0]" in too_long.json()["error"]["message"]
    as_vectors = httpx.post(f"{url}/v1/embeddings", json={"model": RERANKER, "input": "cat"})
    assert as_vectors.status_code == 400  # a reranker gives scores, not vectors


def test_top_n_and_return_documents(server: tuple[str, Path]) -> None:
    url, _ = server
    body = _rerank(
        url, model=BERT, query=QUERY, documents=DOCUMENTS, top_n=2, return_documents=True
    ).json()
    assert len(body["results"]) == 2
    assert body["results"][0]["document"] == {"text": "the cat sat on the mat"}
    everything = _rerank(url, model=BERT, query=QUERY, documents=DOCUMENTS, top_n=99).json()
    assert len(everything["results"]) == len(DOCUMENTS)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'hearth_requests_total{endpoint="/v1/rerank",model="tiny-bert:latest",status="ok"}' in (
        metrics
    )


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"documents": []}, "documents"),
        ({"documents": ["ok", ""]}, "documents.1"),
        ({"documents": ["ok", {"txt": "x"}]}, "documents.1"),
        ({"query": ""}, "query"),
        ({"top_n": 0}, "top_n"),
        ({"query": None}, "query"),
        ({"documents": ["x"] * 1001}, "documents"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(
    server: tuple[str, Path], changes: dict[str, Any], param: str
) -> None:
    url, _ = server
    body = {"model": BERT, "query": QUERY, "documents": DOCUMENTS, **changes}
    response = _rerank(url, **{k: v for k, v in body.items() if v is not None})
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith(param)


def test_over_long_text_unknown_model_and_malformed_body(server: tuple[str, Path]) -> None:
    url, _ = server
    too_long = _rerank(url, model=BERT, query=QUERY, documents=["cat", "cat " * 100])
    assert too_long.status_code == 400
    error = too_long.json()["error"]
    assert error["code"] == "context_length_exceeded" and "documents[1]" in error["message"]
    unknown = _rerank(url, model="no-such-reranker", query=QUERY, documents=DOCUMENTS)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    malformed = httpx.post(
        f"{url}/v1/rerank", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"


def test_ranking_logic() -> None:
    scores = similarity_scores([1.0, 0.0], [[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert scores == pytest.approx([0.0, 1.0, 0.6, 0.0])
    results = ranked(scores, ["a", "b", "c", "d"], 3, True)
    assert [r["index"] for r in results] == [1, 2, 0]  # the tie keeps the documents' order
    assert results[0] == {"index": 1, "relevance_score": 1.0, "document": {"text": "b"}}


@pytest.mark.models
def test_minilm_puts_the_answer_first(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings.from_env({"HEARTH_HOME": str(tmp_path_factory.mktemp("minilm-home"))})
    Store(settings).pull(MINILM)
    documents = [
        "Bananas are rich in potassium.",
        "The stock market fell sharply on Monday.",
        "Paris is the capital and largest city of France.",
        "Berlin is a city in Germany.",
    ]
    with live_server(settings) as url:
        body = _rerank(
            url, model=MINILM, query="What is the capital of France?", documents=documents
        ).json()
    order = [r["index"] for r in body["results"]]
    assert order[0] == 2 and order[1] == 3  # France's capital, then the other capital city
    assert body["results"][0]["relevance_score"] > 0.5 > body["results"][-1]["relevance_score"]
