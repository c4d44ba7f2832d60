"""A loaded model ready to answer: runner + engine thread + tokenizer + chat template.

This is what the CLI (and later the server's model manager) holds. Prompts go in as text or
chat messages; answers come back as :class:`Generation` handles streaming :class:`RequestOutput`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hearth.config import Settings
from hearth.engine.engine import Engine, EngineThread, Generation
from hearth.engine.runner import LlamaRunner, RunnerConfig
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import SchedulerConfig
from hearth.engine.templates import ChatMessage, ChatTemplate
from hearth.errors import TemplateError


@dataclass(frozen=True)
class EngineConfig:
    context: int = 4096  # tokens per sequence, capped by the model
    max_seqs: int = 1
    batch: int = 512
    threads: int = 2
    llama_log: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, max_seqs: int | None = None) -> EngineConfig:
        return cls(
            context=settings.context,
            max_seqs=max_seqs or settings.max_seqs,
            batch=settings.batch,
            threads=settings.effective_threads,
            llama_log=settings.llama_log,
        )


class LLM:
    def __init__(self, model_path: Path, config: EngineConfig) -> None:
        runner = LlamaRunner(
            model_path,
            RunnerConfig(
                n_ctx_per_seq=config.context,
                n_seq_max=config.max_seqs,
                n_batch=config.batch,
                n_threads=config.threads,
                llama_log=config.llama_log,
            ),
        )
        self.tokenizer = runner.tokenizer
        self.context_length = runner.n_ctx_per_seq
        self.chat_template = _load_template(runner)
        scheduler = SchedulerConfig(
            max_seqs=config.max_seqs, token_budget=config.batch, max_context=runner.n_ctx_per_seq
        )
        self._thread = EngineThread(Engine(runner, scheduler))

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, prompt: str, params: SamplingParams) -> Generation:
        return self._thread.submit(self.tokenizer.tokenize(prompt), params)

    def chat(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Generation:
        return self._thread.submit(self.chat_tokens(messages), params)

    def chat_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        if self.chat_template is None:
            raise TemplateError("this model has no chat template; use plain completion")
        text = self.chat_template.render(messages)
        bos_text = self.tokenizer.token_text(self.tokenizer.bos)
        # Templates usually write the BOS token themselves; never add a second one.
        add_bos = not (bos_text and text.startswith(bos_text))
        return self.tokenizer.tokenize(text, add_special=add_bos, parse_special=True)

    def close(self) -> None:
        self._thread.close()


def _load_template(runner: LlamaRunner) -> ChatTemplate | None:
    source = runner.chat_template()
    if not source:
        return None
    tokenizer = runner.tokenizer
    return ChatTemplate(
        source,
        bos_token=tokenizer.token_text(tokenizer.bos),
        eos_token=tokenizer.token_text(tokenizer.eos),
    )
