"""One loaded GGUF model that serves every adapter set: runner + engine thread + tokenizer.

A :class:`BaseModel` is what costs memory (weights, KV cache, compute buffers). The models a
user names (a base, and the fine-tunes or Modelfile variants built on it) are views of it
(:class:`hearth.engine.llm.ModelView`): each adds its profile and submits its requests with its
own adapter set, and the scheduler batches the requests of one set per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from hearth.config import Settings
from hearth.engine.engine import Engine, EngineStats, EngineThread, Generation
from hearth.engine.request import AdapterSet
from hearth.engine.runner import DraftModel, LlamaRunner, LlamaTokenizer, RunnerConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import SchedulerConfig
from hearth.engine.speculative import SpeculativeConfig
from hearth.engine.templates import ChatTemplate
from hearth.modelfile.params import context_length
from hearth.store.profile import ModelProfile


@dataclass(frozen=True)
class EngineConfig:
    context: int = 4096  # tokens per sequence, capped by the model
    max_seqs: int = 1
    batch: int = 512
    threads: int = 2
    llama_log: bool = False
    cache_seqs: int = 0  # finished sequences kept for prefix reuse
    max_queue: int = 256  # requests waiting beyond max_seqs before "queue full"
    kv_cells: int | None = None  # default: context × (max_seqs + cache_seqs)
    adapter_turn: int = 8  # steps one adapter set keeps the engine while another set waits
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)  # SPECULATIVE.md
    draft_model: Path | None = None  # a GGUF with the same vocabulary, for "draft" speculation

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_seqs: int | None = None, cache_seqs: int | None = None
    ) -> EngineConfig:
        return cls(
            context=settings.context,
            max_seqs=max_seqs or settings.max_seqs,
            batch=settings.batch,
            threads=settings.effective_threads,
            llama_log=settings.llama_log,
            cache_seqs=settings.cache_seqs if cache_seqs is None else cache_seqs,
            max_queue=settings.max_queue,
        )

    def for_profile(self, profile: ModelProfile) -> EngineConfig:
        """This config with the model's own ``num_ctx`` (Modelfile PARAMETER), if it sets one."""
        context = context_length(profile.parameters)
        return self if context is None else replace(self, context=context)


class BaseModel:
    """A loaded model file, shared by every view of it (every adapter set)."""

    def __init__(self, model_path: Path, config: EngineConfig) -> None:
        self.path = model_path
        self.config = config
        self._runner = LlamaRunner(
            model_path,
            RunnerConfig(
                n_ctx_per_seq=config.context,
                n_seq_max=config.max_seqs + config.cache_seqs,
                n_batch=config.batch,
                n_threads=config.threads,
                llama_log=config.llama_log,
                n_cells=config.kv_cells,
                swa_full=config.cache_seqs > 0,
            ),
        )
        self.tokenizer: LlamaTokenizer = self._runner.tokenizer
        self.context_length: int = self._runner.n_ctx_per_seq
        self._gguf_template = self._runner.chat_template()
        self._templates: dict[str | None, ChatTemplate | None] = {}
        scheduler = SchedulerConfig(
            max_seqs=config.max_seqs,
            token_budget=config.batch,
            max_context=self._runner.n_ctx_per_seq,
            kv_cells=self._runner.n_cells,
            cache_seqs=config.cache_seqs,
            adapter_turn=config.adapter_turn,
        )
        self._draft = self._load_draft(config)
        engine = Engine(self._runner, scheduler, config.speculative, self._draft)
        self.thread = EngineThread(engine, max_queue=config.max_queue)

    def __enter__(self) -> BaseModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        tokens: list[int],
        params: SamplingParams,
        *,
        n: int = 1,
        adapters: AdapterSet = (),
        cache_key: str = "",
        timeout: float | None = None,
    ) -> list[Generation]:
        """``n`` completions of ``tokens`` computed with ``adapters``."""
        return self.thread.submit_many(
            tokens, params, n=n, cache_key=cache_key, timeout=timeout, adapters=adapters
        )

    def chat_template(self, override: str | None = None) -> ChatTemplate | None:
        """The model's chat template (or ``override``), compiled once and shared by views."""
        if override not in self._templates:
            self._templates[override] = self._compile(override or self._gguf_template)
        return self._templates[override]

    def retain_adapters(self, adapters: AdapterSet) -> None:
        """Load ``adapters`` if needed and keep them until :meth:`release_adapters`."""
        self._runner.retain_adapters(adapters)

    def release_adapters(self, adapters: AdapterSet) -> None:
        self._runner.release_adapters(adapters)

    @property
    def loaded_adapters(self) -> list[Path]:
        return self._runner.loaded_adapters

    def stats(self) -> EngineStats:
        return self.thread.stats()

    @property
    def alive(self) -> bool:
        return self.thread.alive

    def close(self) -> None:
        self.thread.close()
        if self._draft is not None:
            self._draft.close()

    def _load_draft(self, config: EngineConfig) -> DraftModel | None:
        if config.draft_model is None:
            return None
        draft_config = replace(self._runner.config, n_ctx_per_seq=self._runner.n_ctx_per_seq)
        try:
            return DraftModel(config.draft_model, draft_config, self._runner.tokenizer)
        except BaseException:
            self._runner.close()
            raise

    def _compile(self, source: str | None) -> ChatTemplate | None:
        if not source:
            return None
        tokenizer = self.tokenizer
        return ChatTemplate(
            source,
            bos_token=tokenizer.token_text(tokenizer.bos),
            eos_token=tokenizer.token_text(tokenizer.eos),
        )
