"""A loaded model ready to answer: runner + engine thread + tokenizer + chat template.

This is what the CLI (and later the server's model manager) holds. Prompts go in as text or
chat messages; answers come back as :class:`Generation` handles streaming :class:`RequestOutput`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hearth.config import Settings
from hearth.engine.engine import Engine, EngineStats, EngineThread, Generation
from hearth.engine.runner import LlamaRunner, RunnerConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import SchedulerConfig
from hearth.engine.templates import ChatMessage, ChatTemplate
from hearth.errors import TemplateError
from hearth.modelfile.params import apply_defaults, context_length, sampling_defaults
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


class LLM:
    """A loaded model. ``profile`` (from ``hearth create``) adds adapters, a chat template, a
    system prompt, leading messages and default sampling parameters to every request."""

    def __init__(
        self, model_path: Path, config: EngineConfig, profile: ModelProfile | None = None
    ) -> None:
        self.profile = profile or ModelProfile()
        self._defaults = sampling_defaults(self.profile.parameters)
        runner = LlamaRunner(
            model_path,
            RunnerConfig(
                n_ctx_per_seq=config.context,
                n_seq_max=config.max_seqs + config.cache_seqs,
                n_batch=config.batch,
                n_threads=config.threads,
                llama_log=config.llama_log,
                n_cells=config.kv_cells,
                swa_full=config.cache_seqs > 0,
                adapters=self.profile.adapters,
            ),
        )
        self.tokenizer = runner.tokenizer
        self.context_length = runner.n_ctx_per_seq
        self.chat_template = _load_template(runner, self.profile.template)
        scheduler = SchedulerConfig(
            max_seqs=config.max_seqs,
            token_budget=config.batch,
            max_context=runner.n_ctx_per_seq,
            kv_cells=runner.n_cells,
            cache_seqs=config.cache_seqs,
        )
        self._thread = EngineThread(Engine(runner, scheduler), max_queue=config.max_queue)

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(
        self,
        prompt: str,
        params: SamplingParams,
        *,
        cache_key: str = "",
        timeout: float | None = None,
    ) -> Generation:
        tokens = self.tokenizer.tokenize(prompt)
        return self._thread.submit(
            tokens, self.with_defaults(params), cache_key=cache_key, timeout=timeout
        )

    def complete_many(
        self, prompt: str, params: SamplingParams, n: int, *, cache_key: str = ""
    ) -> list[Generation]:
        tokens = self.tokenizer.tokenize(prompt)
        return self._thread.submit_many(
            tokens, self.with_defaults(params), n=n, cache_key=cache_key
        )

    def chat(
        self, messages: Sequence[ChatMessage], params: SamplingParams, *, cache_key: str = ""
    ) -> Generation:
        return self._thread.submit(
            self.conversation_tokens(messages), self.with_defaults(params), cache_key=cache_key
        )

    def stats(self) -> EngineStats:
        return self._thread.stats()

    @property
    def alive(self) -> bool:
        return self._thread.alive

    def generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        *,
        n: int = 1,
        cache_key: str = "",
        timeout: float | None = None,
    ) -> list[Generation]:
        """``n`` completions of an already tokenized prompt."""
        return self._thread.submit_many(
            tokens, self.with_defaults(params), n=n, cache_key=cache_key, timeout=timeout
        )

    def with_defaults(self, params: SamplingParams) -> SamplingParams:
        """``params`` with this model's defaults where the request chose nothing."""
        return apply_defaults(params, self._defaults)

    def with_profile(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The model's system prompt (unless the conversation has one) and its leading
        messages, before the conversation's own."""
        own_system = [m for m in messages[:1] if m.role == "system"]
        rest = list(messages[len(own_system) :])
        system = own_system or (
            [ChatMessage("system", self.profile.system)] if self.profile.system else []
        )
        leading = [ChatMessage(role, content) for role, content in self.profile.messages]
        return [*system, *leading, *rest]

    def prompt_tokens(
        self, prompt: str, *, system: str | None = None, raw: bool = False
    ) -> list[int]:
        """A single prompt (Ollama's /api/generate): one user turn through the chat template,
        with ``system`` or the model's own system prompt; ``raw`` sends it as it is."""
        if raw:
            return self.tokenizer.tokenize(prompt)
        turn = [ChatMessage("system", system)] if system else []
        return self.conversation_tokens([*turn, ChatMessage("user", prompt)])

    def conversation_tokens(
        self, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """A chat through the model's template; a base model without one gets the messages'
        text joined by blank lines, as a plain completion prompt (what Ollama does too)."""
        messages = self.with_profile(messages)
        if self.chat_template is None:
            texts = [m.content for m in messages]
            if tools:
                texts.insert(0, tools_preamble(tools))
            return self.tokenizer.tokenize("\n\n".join(texts))
        return self.chat_tokens(messages, tools)

    def chat_tokens(
        self, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        if self.chat_template is None:
            raise TemplateError("this model has no chat template; use plain completion")
        extra = {"tools": tools} if tools else None
        text = self.chat_template.render(messages, extra=extra)
        bos_text = self.tokenizer.token_text(self.tokenizer.bos)
        # Templates usually write the BOS token themselves; never add a second one.
        add_bos = not (bos_text and text.startswith(bos_text))
        return self.tokenizer.tokenize(text, add_special=add_bos, parse_special=True)

    def close(self) -> None:
        self._thread.close()


def tools_preamble(tools: list[dict[str, Any]]) -> str:
    """Tool descriptions for a model whose template cannot show them (Hermes style)."""
    listing = "\n".join(json.dumps(tool) for tool in tools)
    return (
        "You may call these tools. To call one, answer with"
        ' <tool_call>{"name": ..., "arguments": {...}}</tool_call>\n' + listing
    )


def _load_template(runner: LlamaRunner, override: str | None) -> ChatTemplate | None:
    source = override or runner.chat_template()
    if not source:
        return None
    tokenizer = runner.tokenizer
    return ChatTemplate(
        source,
        bos_token=tokenizer.token_text(tokenizer.bos),
        eos_token=tokenizer.token_text(tokenizer.eos),
    )
