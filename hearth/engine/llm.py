"""A model ready to answer: a view of a loaded base model with the model's own profile.

:class:`ModelView` is what the CLI and the server's routes hold: prompts go in as text or chat
messages, through the model's chat template, system prompt and default parameters; answers come
back as :class:`Generation` handles streaming :class:`RequestOutput`. Its requests carry the
model's adapter set, so many fine-tunes of one base share one :class:`BaseModel`.
:class:`LLM` is a view that loads a base of its own (``hearth run``, tests, benchmarks).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hearth.engine.base_model import BaseModel, EngineConfig
from hearth.engine.engine import EngineStats, Generation
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.errors import TemplateError
from hearth.modelfile.params import apply_defaults, sampling_defaults
from hearth.store.profile import ModelProfile

__all__ = ["LLM", "BaseModel", "EngineConfig", "ModelView", "tools_preamble"]


class ModelView:
    """One model of a loaded base. ``profile`` (from ``hearth create``) adds adapters, a chat
    template, a system prompt, leading messages and default sampling parameters to every
    request. Creating a view loads its adapters (ModelLoadError if one does not fit the base);
    :meth:`release` lets them go."""

    def __init__(self, base: BaseModel, profile: ModelProfile | None = None) -> None:
        self.base = base
        self.profile = profile or ModelProfile()
        self.adapters = self.profile.adapters
        self._defaults = sampling_defaults(self.profile.parameters)
        self.tokenizer = base.tokenizer
        self.context_length = base.context_length
        self.chat_template = base.chat_template(self.profile.template)
        base.retain_adapters(self.adapters)
        self._released = False

    def release(self) -> None:
        """Give up this view's hold on its adapters (requests in flight keep their own)."""
        if not self._released:
            self._released = True
            self.base.release_adapters(self.adapters)

    def complete(
        self,
        prompt: str,
        params: SamplingParams,
        *,
        cache_key: str = "",
        timeout: float | None = None,
    ) -> Generation:
        tokens = self.tokenizer.tokenize(prompt)
        return self.generate(tokens, params, cache_key=cache_key, timeout=timeout)[0]

    def complete_many(
        self, prompt: str, params: SamplingParams, n: int, *, cache_key: str = ""
    ) -> list[Generation]:
        return self.generate(self.tokenizer.tokenize(prompt), params, n=n, cache_key=cache_key)

    def chat(
        self, messages: Sequence[ChatMessage], params: SamplingParams, *, cache_key: str = ""
    ) -> Generation:
        return self.generate(self.conversation_tokens(messages), params, cache_key=cache_key)[0]

    def stats(self) -> EngineStats:
        return self.base.stats()

    @property
    def alive(self) -> bool:
        return self.base.alive

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
        return self.base.submit(
            tokens,
            self.with_defaults(params),
            n=n,
            adapters=self.adapters,
            cache_key=cache_key,
            timeout=timeout,
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


class LLM(ModelView):
    """A view on a base model of its own: loads ``model_path`` and frees it on :meth:`close`."""

    def __init__(
        self, model_path: Path, config: EngineConfig, profile: ModelProfile | None = None
    ) -> None:
        base = BaseModel(model_path, config)
        try:
            super().__init__(base, profile)
        except BaseException:
            base.close()
            raise

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.base.close()


def tools_preamble(tools: list[dict[str, Any]]) -> str:
    """Tool descriptions for a model whose template cannot show them (Hermes style)."""
    listing = "\n".join(json.dumps(tool) for tool in tools)
    return (
        "You may call these tools. To call one, answer with"
        ' <tool_call>{"name": ..., "arguments": {...}}</tool_call>\n' + listing
    )
