"""``POST /v1/rerank`` in the Cohere/Jina shape: documents ordered by relevance to a query.

A reranker (a cross-encoder converted with rank pooling) scores each (query, document) pair
itself: ``relevance_score`` is its classifier's raw score (a logit, as llama.cpp's server
reports it). An embedding model scores each document by the cosine similarity of its vector to
the query's (-1 to 1; the vectors come from the same
:class:`~hearth.engine.embeddings.Embedder` as /v1/embeddings). Every text (or pair) is checked
against the model's length limit before any work, and the request is counted in the metrics and
the usage log like a generation (prompt tokens only).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hearth.engine.embeddings import Embedder
from hearth.errors import ContextOverflowError, HearthError
from hearth.server.deps import embedders_of, record_encoder_use, requested_model

router = APIRouter(prefix="/v1")
ENDPOINT = "/v1/rerank"
MAX_DOCUMENTS = 1000

Text = Annotated[str, StringConstraints(min_length=1)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Document(_Wire):
    text: Text


class RerankRequest(_Wire):
    model: str = Field(min_length=1, max_length=300)
    query: Text
    documents: list[Text | Document] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


@router.post("/rerank")
async def rerank(body: RerankRequest, request: Request) -> dict[str, Any]:
    model = requested_model(request, body.model)
    started = time.monotonic()
    tokens = 0
    try:
        embedder = await asyncio.to_thread(embedders_of(request).get, model)
        tokens, scores = await asyncio.to_thread(_score, embedder, body)
    except HearthError as error:
        record_encoder_use(request, model, ENDPOINT, tokens, started, error)
        raise
    record_encoder_use(request, model, ENDPOINT, tokens, started, None)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": body.model,
        "results": ranked(scores, body.texts(), body.top_n, body.return_documents),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _score(embedder: Embedder, body: RerankRequest) -> tuple[int, list[float]]:
    """(tokens read, a score per document): a reranker's own scores, or cosine similarities."""
    texts = body.texts()
    if embedder.ranks:
        scores = embedder.rank(body.query, texts)
        query = embedder.count_tokens(body.query)
        return sum(query + embedder.count_tokens(t) for t in texts), scores
    tokens = _count_tokens(embedder, body)
    vectors = embedder.embed([body.query, *texts])
    return tokens, similarity_scores(vectors[0], vectors[1:])


def _count_tokens(embedder: Embedder, body: RerankRequest) -> int:
    """Tokens of every text; ContextOverflowError naming the first one over the limit."""
    named = [("query", body.query)] + [(f"documents[{i}]", t) for i, t in enumerate(body.texts())]
    total = 0
    for name, text in named:
        count = embedder.count_tokens(text)
        if count > embedder.max_tokens:
            raise ContextOverflowError(
                f"{name} is {count} tokens long; this model reads at most "
                f"{embedder.max_tokens} tokens per text"
            )
        total += count
    return total


def similarity_scores(query: list[float], documents: list[list[float]]) -> list[float]:
    """Cosine similarities (the vectors are unit length, so dot products)."""
    if not documents:
        return []
    return [float(s) for s in np.asarray(documents) @ np.asarray(query)]


def ranked(
    scores: list[float], texts: list[str], top_n: int | None, with_documents: bool
) -> list[dict[str, Any]]:
    """Results best first (ties keep the documents' order), at most ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]
    results: list[dict[str, Any]] = []
    for index in order:
        result: dict[str, Any] = {"index": index, "relevance_score": scores[index]}
        if with_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    return results
