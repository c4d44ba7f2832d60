"""OpenAI wire types (the subset Hearth serves), validated by pydantic.

Bounds follow OpenAI's documented ranges; anything out of range becomes a 400 naming the field.
Non-finite numbers (NaN, Infinity) are refused by ``allow_inf_nan=False``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 16
MAX_STOP = 4


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class StreamOptions(_Wire):
    include_usage: bool = False


class JsonSchemaFormat(_Wire):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None


class FunctionCallIn(_Wire):
    name: str
    arguments: str = "{}"


class ToolCallIn(_Wire):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCallIn


class FunctionSpec(_Wire):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(_Wire):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedToolChoice(_Wire):
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """Text content; content parts of type "text" are joined (images are not supported)."""
        if self.tool_calls:  # an earlier call, shown to the model in the format it writes
            return "".join(
                f'<tool_call>{{"name": "{c.function.name}", "arguments": {c.function.arguments}}}'
                "</tool_call>"
                for c in self.tool_calls
            )
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class SpeculativeOptions(_Wire):
    """Hearth's extension (docs/SPECULATIVE.md): speed only, the answer stays the same."""

    method: Literal["ngram", "draft", "off"] | None = None
    max_draft: int | None = Field(default=None, ge=1, le=64)


class _Sampling(_Wire):
    model: str = Field(min_length=1, max_length=300)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2)
    user: str | None = None
    speculative: SpeculativeOptions | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[ToolSpec] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    chat_template: str | None = None  # refused: templates come from the model, never a request


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "hearth"
    license: dict[str, Any] | None = None  # Hearth's addition: id, attribution, decision


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(_Wire):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
