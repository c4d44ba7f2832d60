"""Embedding models for /v1/embeddings and /api/embed: loaded on first use, one per name.

Embedding models are small (all-MiniLM-L6-v2: 46 MB) and are kept loaded until shutdown; they
are not yet charged to the model manager's memory budget.
"""

from __future__ import annotations

import threading

from hearth.engine.embeddings import Embedder
from hearth.store import Store


class EmbedderPool:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Embedder:
        model = self._store.resolve(name)  # ModelNotFoundError before anything loads
        key = str(model.name)
        with self._lock:
            embedder = self._embedders.get(key)
            if embedder is None:
                embedder = Embedder(model.model_path)
                self._embedders[key] = embedder
            return embedder

    def close(self) -> None:
        with self._lock:
            for embedder in self._embedders.values():
                embedder.close()
            self._embedders.clear()
