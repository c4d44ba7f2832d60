"""Embedding models for /v1/embeddings and /api/embed: loaded on first use, one per name.

Embedding models are small (all-MiniLM-L6-v2: 46 MB) and stay loaded until shutdown. Their
memory is charged to the model manager's budget (:meth:`ModelManager.reserve`), so a server
near ``HEARTH_MAX_MEMORY`` unloads an idle chat model, or refuses, rather than overcommitting;
their compute takes the same process-wide decode lock as the chat models.
"""

from __future__ import annotations

import threading

from hearth.engine.embeddings import Embedder, EmbedderConfig
from hearth.engine.manager import ModelManager
from hearth.errors import ModelLoadError, ValidationError
from hearth.store import LocalModel

# llama.cpp's buffers for an embedding context of EmbedderConfig().batch_tokens tokens,
# besides the weights (all-MiniLM-L6-v2 measured well under this).
CONTEXT_BYTES = 64 * 2**20


def embedder_memory(model: LocalModel, config: EmbedderConfig) -> int:
    """What an embedding model is charged: its weights plus a batch's buffers (scaled)."""
    scale = max(1, config.batch_tokens // EmbedderConfig().batch_tokens)
    return model.model_path.stat().st_size + CONTEXT_BYTES * scale


class EmbedderPool:
    def __init__(self, manager: ModelManager, config: EmbedderConfig | None = None) -> None:
        self._manager = manager
        self._config = config or EmbedderConfig()
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Embedder:
        model = self._manager.store.resolve(name)  # ModelNotFoundError before anything loads
        key = f"{model.name} (embeddings)"
        with self._lock:
            embedder = self._embedders.get(key)
            if embedder is None:
                self._manager.reserve(key, embedder_memory(model, self._config))
                try:
                    embedder = Embedder(model.model_path, self._config)
                except ModelLoadError:
                    # A chat model asked for vectors: the client's choice of model, not a 500.
                    self._manager.unreserve(key)
                    raise ValidationError(
                        "model", name, "is not an embedding model llama.cpp can use"
                    ) from None
                except BaseException:
                    self._manager.unreserve(key)
                    raise
                self._embedders[key] = embedder
            return embedder

    def close(self) -> None:
        with self._lock:
            for key, embedder in self._embedders.items():
                embedder.close()
                self._manager.unreserve(key)
            self._embedders.clear()
