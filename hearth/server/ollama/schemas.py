"""Ollama wire types (the subset Hearth serves)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Options(_Wire):
    """Ollama's `options`; the load-time ones (num_ctx, num_gpu, ...) are accepted and ignored."""

    temperature: float | None = Field(default=None, ge=0.0, le=100.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    typical_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    repeat_last_n: int | None = Field(default=None, ge=-1)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    # Hearth's extension (docs/SPECULATIVE.md): speed only, the answer stays the same.
    speculative: Literal["ngram", "draft", "off"] | None = None
    draft_max: int | None = Field(default=None, ge=1, le=64)


class GenerateRequest(_Wire):
    model: str = Field(min_length=1)
    prompt: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    stream: bool = True
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: float | str | None = None


class ToolFunction(_Wire):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(_Wire):
    function: ToolFunction


class ChatMessage(_Wire):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] | None = None  # an earlier answer's calls, in the history


class ChatRequest(_Wire):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    stream: bool = True
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: float | str | None = None


class ModelRequest(_Wire):
    model: str = Field(default="", alias="model")
    name: str = ""  # older clients send "name"
    stream: bool = True
    insecure: bool = False  # /api/pull: plain HTTP to a registry that is not on loopback

    def target(self) -> str:
        return self.model or self.name


class CopyRequest(_Wire):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


class EmbedRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    truncate: bool = True
    keep_alive: float | str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class CreateRequest(_Wire):
    """``POST /api/create``: a base (``from``, or an uploaded GGUF in ``files``) and what to add;
    or, as older clients send it, a whole Modelfile."""

    model: str = ""
    name: str = ""  # older clients
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] = Field(default_factory=dict)  # filename → digest of an uploaded blob
    adapters: dict[str, str] = Field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    license: str | list[str] | None = None
    parameters: dict[str, Any] | None = None
    messages: list[ChatMessage] | None = None
    modelfile: str | None = None
    quantize: str | None = None
    stream: bool = True

    def target(self) -> str:
        return self.model or self.name
