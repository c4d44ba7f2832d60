"""The only module that talks to llama.cpp (through llama-cpp-python's low-level C API).

A :class:`LlamaRunner` owns one model and one context. ``execute`` turns a
:class:`SchedulerOutput` into one ``llama_decode`` over a ``llama_batch`` holding every scheduled
token, with one ``seq_id`` per request, then samples each request that needs a token with its own
llama.cpp sampler chain.

LoRA adapters are loaded on the model when a first user retains them (a model view, a request)
and freed when the last one releases them; before each decode the context gets the step's
adapter set, only when it differs from the one it has (llama.cpp then re-reserves its compute
graph before the next decode). Every llama.cpp call on the model or the context runs under
``DECODE_LOCK``, so loading or freeing an adapter never overlaps a decode.
"""

from __future__ import annotations

import ctypes
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import llama_cpp
import numpy as np

from hearth.engine.request import AdapterSet, Request, TokenLogprob
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import ScheduledChunk, SchedulerOutput
from hearth.engine.speculative import verify
from hearth.errors import EngineError, ModelLoadError, ValidationError

_backend_lock = threading.Lock()
DECODE_LOCK = threading.Lock()  # one llama_decode at a time across every model in the process
_backend_ready = False
_log_callback: object = None  # kept alive: llama.cpp holds a raw pointer to it


@dataclass(frozen=True)
class RunnerConfig:
    n_ctx_per_seq: int  # capped by the model's training context
    n_seq_max: int  # live sequences plus those the prefix cache keeps
    n_batch: int
    n_threads: int
    llama_log: bool = False
    n_cells: int | None = None  # KV cells in all; default n_ctx_per_seq × n_seq_max
    swa_full: bool = False  # full-size sliding-window cache: needed to reuse cached prefixes


def _init_backend(llama_log: bool) -> None:
    global _backend_ready, _log_callback
    with _backend_lock:
        if _backend_ready:
            return
        if not llama_log:
            _log_callback = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


class LlamaTokenizer:
    """Text ↔ tokens with a model's vocabulary. Read-only, so safe from any thread."""

    def __init__(self, vocab: llama_cpp.llama_vocab_p) -> None:
        self._vocab = vocab
        self.n_vocab: int = llama_cpp.llama_vocab_n_tokens(vocab)
        self.bos: int = llama_cpp.llama_vocab_bos(vocab)
        self.eos: int = llama_cpp.llama_vocab_eos(vocab)
        self.adds_bos: bool = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self._pieces: dict[int, bytes] = {}

    def tokenize(
        self, text: str, *, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        count = llama_cpp.llama_tokenize(
            self._vocab, data, len(data), buffer, capacity, add_special, parse_special
        )
        if count < 0:  # llama.cpp says how many it needs
            capacity = -count
            buffer = (llama_cpp.llama_token * capacity)()
            count = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buffer, capacity, add_special, parse_special
            )
        return list(buffer[:count])

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens render as nothing)."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._piece(token)
            self._pieces[token] = piece
        return piece

    def piece_text(self, token: int) -> str:
        """One token's text on its own (a partial UTF-8 character becomes U+FFFD)."""
        return self.token_bytes(token).decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def token_text(self, token: int) -> str:
        raw = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -n, 0, False)
        return buffer.raw[:n]


class LlamaRunner:
    def __init__(self, model_path: Path, config: RunnerConfig) -> None:
        _init_backend(config.llama_log)
        self.config = config
        self._model = _load_model(model_path)
        self.n_ctx_train: int = llama_cpp.llama_model_n_ctx_train(self._model)
        self.n_ctx_per_seq = min(config.n_ctx_per_seq, self.n_ctx_train or config.n_ctx_per_seq)
        self._closed = False
        self.n_cells = config.n_cells or self.n_ctx_per_seq * config.n_seq_max
        self._ctx = _new_context(self._model, config, self.n_cells)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.tokenizer = LlamaTokenizer(self._vocab)
        self._batch = llama_cpp.llama_batch_init(config.n_batch, 0, 1)
        self._samplers: dict[int, llama_cpp.llama_sampler_p] = {}
        self._request_adapters: dict[int, AdapterSet] = {}
        self._adapters: dict[Path, llama_cpp.llama_adapter_lora_p] = {}  # loaded, by file
        self._adapter_users: Counter[Path] = Counter()
        self._adapter_lock = threading.Lock()  # guards the two above; taken before DECODE_LOCK
        self._active_adapters: AdapterSet = ()  # what the context applies (under DECODE_LOCK)
        self.adapter_switches = 0

    # -- metadata -------------------------------------------------------------------------------

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8") if raw else None

    def metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(4096)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, 4096)
        return buffer.value.decode("utf-8", errors="replace") if n >= 0 else None

    # -- requests -------------------------------------------------------------------------------

    def prepare(self, request: Request) -> None:
        """Build the request's sampler chain and retain its adapters (in the caller's thread: a
        bad grammar or adapter fails there, for that request only, before it reaches the
        engine)."""
        sampler = build_sampler_chain(
            request.params, self._vocab, self.tokenizer.n_vocab, self.n_ctx_per_seq
        )
        try:
            self.retain_adapters(request.adapters)
        except BaseException:
            llama_cpp.llama_sampler_free(sampler)
            raise
        self._samplers[request.request_id] = sampler
        self._request_adapters[request.request_id] = request.adapters

    def release(self, request: Request) -> None:
        """Free the request's sampler and release its adapters (its cells are freed through
        ``free_sequences``)."""
        sampler = self._samplers.pop(request.request_id, None)
        if sampler is not None:
            llama_cpp.llama_sampler_free(sampler)
        adapters = self._request_adapters.pop(request.request_id, None)
        if adapters:
            self.release_adapters(adapters)

    # -- adapters -------------------------------------------------------------------------------

    def retain_adapters(self, adapters: AdapterSet) -> None:
        """Count one more user of each adapter, loading those not loaded yet.

        Raises ModelLoadError (nothing retained) when a file is not a LoRA for this model."""
        if not adapters:
            return
        with self._adapter_lock:
            if self._closed:
                raise EngineError("the model was unloaded")
            missing = [p for p in dict.fromkeys(adapters) if p not in self._adapters]
            if missing:
                with DECODE_LOCK:
                    self._adapters.update(_load_adapters(self._model, missing))
            self._adapter_users.update(adapters)

    def release_adapters(self, adapters: AdapterSet) -> None:
        """Count one user less of each adapter; free those nobody uses any more."""
        if not adapters:
            return
        with self._adapter_lock:
            self._adapter_users.subtract(adapters)
            unused = [p for p in dict.fromkeys(adapters) if self._adapter_users[p] <= 0]
            if not unused or self._closed:  # a closed model freed its adapters with it
                return
            with DECODE_LOCK:
                if any(p in unused for p in self._active_adapters):
                    self._apply_adapters(tuple(p for p in self._active_adapters if p not in unused))
                for path in unused:
                    del self._adapter_users[path]
                    llama_cpp.llama_adapter_lora_free(self._adapters.pop(path))

    @property
    def loaded_adapters(self) -> list[Path]:
        with self._adapter_lock:
            return list(self._adapters)

    def _apply_adapters(self, adapters: AdapterSet) -> None:
        """Set the context's adapters (caller holds DECODE_LOCK; every one is loaded)."""
        if adapters == self._active_adapters:
            return
        handles: list[Any] = [self._adapters[path] for path in adapters]
        array = (llama_cpp.llama_adapter_lora_p_ctypes * len(handles))(*handles)
        scales = (ctypes.c_float * len(handles))(*([1.0] * len(handles)))
        if llama_cpp.llama_set_adapters_lora(self._ctx, array, len(handles), scales) != 0:
            raise EngineError("llama.cpp could not apply the LoRA adapters")
        self._active_adapters = adapters
        self.adapter_switches += 1

    def free_sequences(self, seq_ids: list[int]) -> None:
        for seq_id in seq_ids:
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

    def sequence_span(self, seq_id: int) -> tuple[int, int]:
        """Lowest and highest position holding cells of ``seq_id`` ((-1, -1) when empty)."""
        return (
            llama_cpp.llama_memory_seq_pos_min(self._memory, seq_id),
            llama_cpp.llama_memory_seq_pos_max(self._memory, seq_id),
        )

    # -- one engine step ------------------------------------------------------------------------

    def execute(self, output: SchedulerOutput) -> dict[int, list[int]]:
        """Free and copy sequences, compute the scheduled tokens in one decode, sample.

        Returns request_id → the new tokens: one, or for a chunk with a draft, the accepted
        draft tokens and the target's own next one (``speculative.verify``); the rejected
        positions' cells are removed at once. One decode at a time in the whole process: two
        llama.cpp contexts decoding at once on the same cores slow each other down many times.
        """
        self.free_sequences(output.frees)
        for copy in output.copies:
            llama_cpp.llama_memory_seq_rm(self._memory, copy.dst, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._memory, copy.src, copy.dst, 0, copy.length)
        if not output.chunks:
            return {}
        to_sample = self._fill_batch(output)
        with DECODE_LOCK:
            self._apply_adapters(output.adapters)
            status = llama_cpp.llama_decode(self._ctx, self._batch)
            if status != 0:
                raise EngineError(f"llama_decode failed with status {status}")
            return {chunk.request.request_id: self._tokens(chunk, at) for chunk, at in to_sample}

    def _tokens(self, chunk: ScheduledChunk, index: int) -> list[int]:
        """Sample the chunk's last token (at batch ``index``), or verify its draft."""
        request = chunk.request
        if not chunk.draft:
            return [self._sample(request, index)]
        first = index - chunk.draft  # the logits after the request's last accepted token
        draft = chunk.tokens[-chunk.draft :]
        emitted = verify(draft, lambda i: self._sample(request, first + i))
        accepted = len(emitted) - 1
        if accepted < chunk.draft:
            assert request.seq_id is not None
            keep = chunk.start_pos + len(chunk.tokens) - chunk.draft + accepted
            llama_cpp.llama_memory_seq_rm(self._memory, request.seq_id, keep, -1)
        return emitted

    def trim_sequence(self, seq_id: int, length: int) -> None:
        """Drop the cells of ``seq_id`` from position ``length`` on."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, length, -1)

    def _sample(self, request: Request, index: int) -> int:
        token: int = llama_cpp.llama_sampler_sample(
            self._samplers[request.request_id], self._ctx, index
        )
        if request.params.logprobs is not None:
            logits = llama_cpp.llama_get_logits_ith(self._ctx, index)
            request.logprobs.append(
                token_logprobs(logits, self.tokenizer.n_vocab, token, request.params.logprobs)
            )
        return token

    def close(self) -> None:
        for sampler in self._samplers.values():
            llama_cpp.llama_sampler_free(sampler)
        self._samplers.clear()
        with self._adapter_lock:
            if self._closed:
                return
            self._closed = True
            self._adapters.clear()  # llama_model_free frees them
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            llama_cpp.llama_model_free(self._model)

    def _fill_batch(self, output: SchedulerOutput) -> list[tuple[ScheduledChunk, int]]:
        if output.num_tokens > self.config.n_batch:
            raise EngineError(
                f"step of {output.num_tokens} tokens exceeds batch {self.config.n_batch}"
            )
        writer = BatchWriter(self._batch)
        to_sample = []
        for chunk in output.chunks:
            seq_id = chunk.request.seq_id
            if seq_id is None:
                raise EngineError(f"request {chunk.request.request_id} has no sequence")
            last = writer.add(chunk.tokens, chunk.start_pos, seq_id, outputs=False)
            for index in range(last - chunk.draft, last + 1) if chunk.sample else ():
                writer.want_output(index)  # a draft's every position, else the last
            if chunk.sample:
                to_sample.append((chunk, last))
        writer.close()
        return to_sample


class DraftModel:
    """A smaller model with the target's vocabulary that proposes draft tokens greedily
    (a ``speculative.Drafter``).

    Its own context keeps one sequence per target sequence id, holding the KV of the tokens it
    last saw for the request there; each proposal first trims that sequence to what still
    matches the request's tokens (rejected drafts, another request on the id), computes what it
    lacks, then decodes greedily, all requests in one batch per draft position."""

    def __init__(self, model_path: Path, config: RunnerConfig, target: LlamaTokenizer) -> None:
        _init_backend(config.llama_log)
        self._model = _load_model(model_path)
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            check_same_vocabulary(LlamaTokenizer(self._vocab), target, model_path.name)
        except BaseException:
            llama_cpp.llama_model_free(self._model)
            raise
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(self._model) or config.n_ctx_per_seq
        n_cells = min(config.n_ctx_per_seq, n_ctx_train) * config.n_seq_max
        self._ctx = _new_context(self._model, config, n_cells)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._n_vocab: int = target.n_vocab
        self._n_batch = config.n_batch
        self._batch = llama_cpp.llama_batch_init(config.n_batch, 0, 1)
        self._held: dict[int, tuple[int, list[int]]] = {}  # seq id → (request id, its tokens)
        self._closed = False

    def propose(self, wanted: list[tuple[Request, int]]) -> dict[int, list[int]]:
        drafts: dict[int, list[int]] = {}
        live = [(r, k) for r, k in wanted if r.seq_id is not None]
        with DECODE_LOCK:
            pending = {r.request_id: self._catch_up(r) for r, _ in live}
            self._decode_rounds(live, pending, drafts)
        return drafts

    def release(self, request: Request) -> None:
        """Nothing to do: a sequence id's next user trims what it does not share."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            llama_cpp.llama_model_free(self._model)

    def _catch_up(self, request: Request) -> tuple[int, list[int]]:
        """(start position, tokens) the draft sequence must compute to reach the request's last
        token; its cells beyond what still matches are dropped first."""
        assert request.seq_id is not None
        tokens = request.all_tokens
        owner, held = self._held.get(request.seq_id, (request.request_id, []))
        keep = _common_prefix(held, tokens) if owner == request.request_id else 0
        keep = min(keep, len(tokens) - 1)  # the last token's logits give the first draft
        llama_cpp.llama_memory_seq_rm(self._memory, request.seq_id, keep, -1)
        self._held[request.seq_id] = (request.request_id, tokens)
        return keep, tokens[keep:]

    def _decode_rounds(
        self,
        live: list[tuple[Request, int]],
        pending: dict[int, tuple[int, list[int]]],
        drafts: dict[int, list[int]],
    ) -> None:
        """Round 0 computes each request's missing tokens (in batches of ``n_batch``); round i
        decodes draft token i - 1 to get draft token i."""
        for round_ in range(max((k for _, k in live), default=0)):
            jobs = []
            for request, k in live:
                if round_ >= k:
                    continue
                if round_ == 0:
                    start, tokens = pending[request.request_id]
                else:  # the previous draft token, after the request's tokens
                    assert request.seq_id is not None
                    start, tokens = request.num_tokens + round_ - 1, drafts[request.request_id][-1:]
                    self._held[request.seq_id][1].extend(tokens)
                jobs.append((request, start, tokens))
            for request, token in self._decode(jobs).items():
                drafts.setdefault(request.request_id, []).append(token)

    def _decode(self, jobs: list[tuple[Request, int, list[int]]]) -> dict[Request, int]:
        """Compute each job's tokens (from its start position); return each request's greedy
        next token, read from the logits of its last one."""
        parts = [
            (request, start + i, token, i == len(tokens) - 1)
            for request, start, tokens in jobs
            for i, token in enumerate(tokens)
        ]
        argmax: dict[Request, int] = {}
        for offset in range(0, len(parts), self._n_batch):
            writer = BatchWriter(self._batch)
            finals = []
            for request, position, token, last in parts[offset : offset + self._n_batch]:
                assert request.seq_id is not None
                index = writer.add([token], position, request.seq_id, outputs=last)
                if last:
                    finals.append((request, index))
            writer.close()
            if llama_cpp.llama_decode(self._ctx, self._batch) != 0:
                raise EngineError("llama_decode failed in the draft model")
            for request, index in finals:
                logits = llama_cpp.llama_get_logits_ith(self._ctx, index)
                argmax[request] = _argmax(logits, self._n_vocab)
        return argmax


def check_same_vocabulary(draft: LlamaTokenizer, target: LlamaTokenizer, name: str) -> None:
    """Refuse a draft model whose token ids mean other text than the target's: its size, its
    special tokens and a spread of token pieces must match."""
    if draft.n_vocab != target.n_vocab:
        raise ModelLoadError(
            f"draft model {name} has {draft.n_vocab} tokens, the model {target.n_vocab}:"
            " a draft model needs the same vocabulary"
        )
    probes = {draft.bos, draft.eos, target.bos, target.eos}
    probes |= set(range(0, target.n_vocab, max(1, target.n_vocab // 64)))
    probes |= {target.n_vocab - 1}
    for token in sorted(t for t in probes if 0 <= t < target.n_vocab):
        if draft.token_text(token) != target.token_text(token):
            raise ModelLoadError(
                f"draft model {name}: token {token} is {draft.token_text(token)!r}, the model's"
                f" is {target.token_text(token)!r}; a draft model needs the same vocabulary"
            )


def _argmax(logits: object, n_vocab: int) -> int:
    row = np.ctypeslib.as_array(cast("ctypes._Pointer[ctypes.c_float]", logits), shape=(n_vocab,))
    return int(row.argmax())


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class BatchWriter:
    """Writes tokens into a ``llama_batch``, one sequence id per token.

    The field pointers are fetched once: each ctypes attribute access builds a new object,
    which would cost more than the writes themselves."""

    def __init__(self, batch: llama_cpp.llama_batch) -> None:
        self._batch = batch
        # Typed Any: llama-cpp-python's stubs give some of these fields the wrong array types.
        self._fields: tuple[Any, ...] = (
            batch.token,
            batch.pos,
            batch.n_seq_id,
            batch.seq_id,
            batch.logits,
        )
        self.n = 0

    def add(self, tokens: list[int], start_pos: int, seq_id: int, *, outputs: bool) -> int:
        """Append ``tokens`` at positions from ``start_pos``; return the last one's index."""
        token, pos, n_seq_id, seq_ids, logits = self._fields
        n = self.n
        for position, t in enumerate(tokens, start=start_pos):
            token[n] = t
            pos[n] = position
            n_seq_id[n] = 1
            seq_ids[n][0] = seq_id
            logits[n] = outputs
            n += 1
        self.n = n
        return n - 1

    def want_output(self, index: int) -> None:
        logits = self._fields[-1]
        logits[index] = True

    def close(self) -> None:
        self._batch.n_tokens = self.n


def build_sampler_chain(
    params: SamplingParams, vocab: llama_cpp.llama_vocab_p, n_vocab: int, n_ctx: int
) -> llama_cpp.llama_sampler_p:
    """One chain per request, in llama.cpp's order: bias, penalties, grammar, truncation,
    temperature, draw."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: llama_cpp.llama_sampler_p) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    try:
        if params.logit_bias:
            add(_logit_bias_sampler(params.logit_bias, n_vocab))
        if params.uses_penalties:
            # -1 means "the whole context", as in Ollama's repeat_last_n.
            last_n = params.repeat_last_n if params.repeat_last_n >= 0 else n_ctx
            add(
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    last_n,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
        if params.grammar is not None:
            add(_grammar_sampler(vocab, params.grammar))
    except ValidationError:
        llama_cpp.llama_sampler_free(chain)
        raise
    if params.greedy:
        add(llama_cpp.llama_sampler_init_greedy())
        return cast("llama_cpp.llama_sampler_p", chain)
    if params.top_k > 0:
        add(llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.typical_p < 1.0:
        add(llama_cpp.llama_sampler_init_typical(params.typical_p, 1))
    if params.top_p < 1.0:
        add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:
        add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(params.temperature))
    seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
    add(llama_cpp.llama_sampler_init_dist(seed))
    return cast("llama_cpp.llama_sampler_p", chain)


def _logit_bias_sampler(
    bias: tuple[tuple[int, float], ...], n_vocab: int
) -> llama_cpp.llama_sampler_p:
    for token, _ in bias:
        if not 0 <= token < n_vocab:
            raise ValidationError(
                "logit_bias", token, f"token id outside the vocabulary (0..{n_vocab - 1})"
            )
    entries = (llama_cpp.llama_logit_bias * len(bias))(
        *(llama_cpp.llama_logit_bias(token, value) for token, value in bias)
    )
    return cast(
        "llama_cpp.llama_sampler_p",
        llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(bias), entries),
    )


def _grammar_sampler(vocab: llama_cpp.llama_vocab_p, grammar: str) -> llama_cpp.llama_sampler_p:
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        raise ValidationError(
            "grammar", _abbreviate(grammar), "llama.cpp could not parse the grammar"
        )
    return cast("llama_cpp.llama_sampler_p", sampler)


def _abbreviate(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def token_logprobs(logits: object, n_vocab: int, token: int, top: int) -> TokenLogprob:
    """Log-probabilities of the model's distribution (before sampling transforms)."""
    row = np.ctypeslib.as_array(cast("ctypes._Pointer[ctypes.c_float]", logits), shape=(n_vocab,))
    peak = float(row.max())
    log_total = peak + float(np.log(np.exp(row - peak, dtype=np.float64).sum()))
    best = np.argpartition(row, -top)[-top:] if top > 0 else np.array([], dtype=np.int64)
    ranked = sorted(((int(t), float(row[t]) - log_total) for t in best), key=lambda p: -p[1])
    return TokenLogprob(token, float(row[token]) - log_total, tuple(ranked))


def _load_model(path: Path) -> llama_cpp.llama_model_p:
    from hearth.store.gguf_check import check_gguf  # bounds-check the header llama.cpp trusts

    check_gguf(path)
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ModelLoadError(f"llama.cpp could not load {path}")
    return cast("llama_cpp.llama_model_p", model)


def _load_adapters(
    model: llama_cpp.llama_model_p, paths: list[Path]
) -> dict[Path, llama_cpp.llama_adapter_lora_p]:
    """Load LoRA adapters on ``model``; on a failure free those loaded here and raise."""
    from hearth.store.gguf_check import check_gguf  # as _load_model: no unchecked header

    loaded: dict[Path, llama_cpp.llama_adapter_lora_p] = {}
    try:
        for path in paths:
            check_gguf(path)
            adapter = llama_cpp.llama_adapter_lora_init(model, str(path).encode())
            if not adapter:
                raise ModelLoadError(
                    f"llama.cpp could not load the LoRA adapter {path.name}: it is not a LoRA "
                    "GGUF or was made for another model"
                )
            loaded[path] = cast("llama_cpp.llama_adapter_lora_p", adapter)
    except BaseException:
        for done in loaded.values():
            llama_cpp.llama_adapter_lora_free(done)
        raise
    return loaded


def _new_context(
    model: llama_cpp.llama_model_p, config: RunnerConfig, n_ctx: int
) -> llama_cpp.llama_context_p:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = config.n_batch
    params.n_ubatch = config.n_batch
    params.n_seq_max = config.n_seq_max
    params.n_threads = config.n_threads
    params.n_threads_batch = config.n_threads
    params.kv_unified = True  # every sequence draws from one pool of cells
    params.swa_full = config.swa_full
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        llama_cpp.llama_model_free(model)
        raise ModelLoadError("llama.cpp could not create a context for the model")
    return cast("llama_cpp.llama_context_p", ctx)
