"""How much memory a model will take once loaded, estimated from its GGUF metadata beforehand.

The estimate follows what llama.cpp allocates for the context a :class:`BaseModel` creates: one
unified KV cache for ``n_seq_max = max_seqs + cache_seqs`` sequences, ``n_ubatch = n_batch``, flash
attention on "auto" (which CPU builds turn on), a full-size sliding-window cache only when the
prefix cache is on (``cache_seqs > 0``):

- weights: the GGUF file size (llama.cpp maps it; repacked copies of some quantized tensors
  add a few percent: Gemma 3 270M Q4_K_M maps 235 MiB and repacks 13 MiB of a 241 MiB file).
- KV cache: for each layer, cells × (n_embd_k_gqa + n_embd_v_gqa) × 2 bytes (f16 K and V),
  where n_embd_k_gqa = n_head_kv × key_length. Cells are ``kv_cells`` if set, else
  ``min(context, training context) × n_seq_max``, rounded up to 256. Sliding-window layers
  (Gemma 3: five of every six) hold ``window × n_seq_max + n_ubatch`` cells, rounded up to 256
  and at most the full count, unless the sliding-window cache is full-size.
- compute: llama.cpp reserves its compute buffer for the worst-case batch, in which every
  token of a full micro-batch has logits; the graph allocator reuses memory, so the buffer is
  about the larger of the logits (n_vocab × n_ubatch × 4 bytes) and the attention masks (f16,
  cells × n_ubatch × 2 bytes, one per cache), plus activations (n_ubatch × (n_embd + n_ff) ×
  8 bytes, fitted to the measurements below). Add the output buffer: n_vocab × n_seq_max × 4.
- overhead: what loading costs beyond those buffers (vocabulary tables, thread pool, graph
  metadata): 8 MiB + 128 bytes per vocabulary token (a first load of the tiny model grows the
  process by about 6 MiB; Gemma's by 27 to 45 MiB beyond its buffers).

Measured against llama.cpp's own log (llama-cpp-python 0.3.36): the KV cache is exact; the
compute buffer is within 3% for Gemma 3 270M (context 256-4096, 1-16 sequences, cache 0-4,
batch 64-512) and within 25% for the tiny test model, whose compute buffer is a few hundred KiB.
The estimate is an upper bound on resident memory: llama.cpp reserves the worst-case logits,
but the runner asks for logits only where it samples, so most of that buffer is never touched
(Gemma at context 1024, 4 sequences, batch 512, cache 4: estimate 956 MiB, resident after a
decode 453 MiB).
"""

from __future__ import annotations

from dataclasses import dataclass

from hearth.engine.llm import EngineConfig
from hearth.store.gguf_shape import ModelShape, read_gguf_shape
from hearth.store.store import LocalModel

MIB = 2**20
KV_CELL_PAD = 256  # llama.cpp rounds the KV cache up to a multiple of 256 cells
KV_BYTES = 2  # f16 K and V
LOGIT_BYTES = 4  # f32
MASK_BYTES = 2  # f16 under flash attention
ACTIVATION_BYTES = 8  # per token per (n_embd + n_ff): fitted to llama.cpp's compute buffers
FIXED_OVERHEAD = 8 * MIB
VOCAB_OVERHEAD = 128  # bytes per vocabulary token


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model will hold; ``total`` is what the manager's budget counts."""

    weights: int
    kv_cache: int
    compute: int  # llama.cpp's compute and output buffers
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def estimate_memory(model: LocalModel, config: EngineConfig) -> MemoryEstimate:
    """Estimate before loading: reads the model's metadata (well under a second), no weights."""
    shape = read_gguf_shape(model.model_path)
    return estimate_for_shape(shape, model.model_path.stat().st_size, config)


def estimate_for_shape(shape: ModelShape, weights: int, config: EngineConfig) -> MemoryEstimate:
    return MemoryEstimate(
        weights=weights,
        kv_cache=kv_cache_bytes(shape, config),
        compute=compute_bytes(shape, config),
        overhead=FIXED_OVERHEAD + VOCAB_OVERHEAD * shape.n_vocab,
    )


def sequences(config: EngineConfig) -> int:
    """llama.cpp's n_seq_max: live sequences plus those the prefix cache keeps (BaseModel's)."""
    return config.max_seqs + config.cache_seqs


def swa_full(config: EngineConfig) -> bool:
    """Whether sliding-window layers get full-size caches: BaseModel asks for it when the prefix
    cache is on (a cached prefix must keep every position)."""
    return config.cache_seqs > 0


def kv_cells(shape: ModelShape, config: EngineConfig) -> int:
    """Cells of the unified KV cache, rounded up as llama.cpp does."""
    per_sequence = min(config.context, shape.context_length or config.context)
    return _round_up(config.kv_cells or per_sequence * sequences(config), KV_CELL_PAD)


def window_cells(shape: ModelShape, config: EngineConfig) -> int:
    """Cells of a sliding-window layer: the window of every sequence plus one micro-batch."""
    cells = kv_cells(shape, config)
    if not shape.sliding_window or swa_full(config):
        return cells
    window = shape.sliding_window * sequences(config) + config.batch
    return min(cells, _round_up(window, KV_CELL_PAD))


def kv_cells_per_layer(shape: ModelShape, config: EngineConfig) -> list[int]:
    cells, window = kv_cells(shape, config), window_cells(shape, config)
    return [window if swa else cells for swa in shape.swa_layers]


def kv_cache_bytes(shape: ModelShape, config: EngineConfig) -> int:
    cells = kv_cells_per_layer(shape, config)
    return sum(cells[layer] * shape.kv_width(layer) * KV_BYTES for layer in range(shape.n_layers))


def compute_bytes(shape: ModelShape, config: EngineConfig) -> int:
    ubatch = config.batch
    logits = shape.n_vocab * ubatch * LOGIT_BYTES
    masks = kv_cells(shape, config) * ubatch * MASK_BYTES
    if any(shape.swa_layers):
        masks += window_cells(shape, config) * ubatch * MASK_BYTES
    activations = ubatch * (shape.n_embd + shape.n_ff) * ACTIVATION_BYTES
    output = shape.n_vocab * sequences(config) * LOGIT_BYTES
    return max(logits, masks) + activations + output


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
