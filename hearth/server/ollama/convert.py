"""Pure conversions between Ollama wire types and engine / store types."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hearth.engine.grammar import json_object_grammar, json_schema_grammar
from hearth.engine.request import RequestOutput
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.engine.tool_stream import ContentDelta, ToolCallStart, ToolCallStream, ToolStreamEvent
from hearth.errors import ValidationError
from hearth.log import get_logger
from hearth.modelfile.render import render_modelfile, render_parameters
from hearth.server.ollama.schemas import ChatMessage as WireMessage
from hearth.server.ollama.schemas import ChatRequest, GenerateRequest, Options
from hearth.store import LocalModel, Store

log = get_logger(__name__)


def sampling_params(options: Options | None, format_: Any) -> SamplingParams:
    given = options.model_dump(exclude_none=True) if options is not None else {}
    num_predict = given.pop("num_predict", None)
    if num_predict is not None and num_predict > 0:
        given["max_tokens"] = num_predict
    elif num_predict in (-1, -2):
        given["max_tokens"] = None  # chosen: no limit, whatever the model's default
    elif num_predict is not None:
        raise ValidationError("num_predict", num_predict, "must be positive, or -1 for no limit")
    given["grammar"] = _grammar(format_)
    return SamplingParams.from_mapping(given).chosen(frozenset(given))


def _grammar(format_: Any) -> str | None:
    if format_ in (None, ""):
        return None
    if format_ == "json":
        return json_object_grammar()
    return json_schema_grammar(format_)


def generate_prompt(body: GenerateRequest) -> str:
    if body.template is not None:
        raise ValidationError("template", "…", "templates come from the model, not a request")
    return body.prompt or ""


def chat_messages(body: ChatRequest) -> list[ChatMessage]:
    return [ChatMessage(m.role, _message_text(m)) for m in body.messages]


def _message_text(message: WireMessage) -> str:
    """The content; an earlier answer's tool calls are shown in the format models write."""
    calls = message.tool_calls or []
    written = "".join(
        "<tool_call>"
        + json.dumps({"name": call.function.name, "arguments": call.function.arguments})
        + "</tool_call>"
        for call in calls
    )
    return message.content + written


class ToolCallCollector:
    """Streams an answer's content and gathers its tool calls as Ollama returns them: whole,
    with arguments as an object (``hearth.engine.tool_stream`` does the parsing)."""

    def __init__(self) -> None:
        self._stream = ToolCallStream()
        self._names: list[str] = []
        self._arguments: list[list[str]] = []

    def content(self, text: str) -> str:
        return self._apply(self._stream.feed(text))

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """The last of the content, and the calls made."""
        tail = self._apply(self._stream.finish())
        return tail, [
            {"function": {"name": name, "arguments": _arguments(parts)}}
            for name, parts in zip(self._names, self._arguments, strict=True)
        ]

    def _apply(self, events: list[ToolStreamEvent]) -> str:
        text = []
        for event in events:
            if isinstance(event, ContentDelta):
                text.append(event.text)
            elif isinstance(event, ToolCallStart):
                self._names.append(event.name)
                self._arguments.append([])
            else:
                self._arguments[event.index].append(event.text)
        return "".join(text)


def _arguments(parts: list[str]) -> dict[str, Any]:
    text = "".join(parts).strip() or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        # The length, never the text: model output stays out of the logs.
        log.warning("a tool call's arguments (%d characters) are not a JSON object", len(text))
        return {}
    return value


def timestamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def final_fields(
    output: RequestOutput, started_ns: int, first_ns: int | None, now_ns: int
) -> dict[str, Any]:
    first = first_ns or now_ns
    return {
        "done": True,
        "done_reason": "length" if output.finish_reason == "length" else "stop",
        "total_duration": now_ns - started_ns,
        "load_duration": 0,
        "prompt_eval_count": output.prompt_tokens,
        "prompt_eval_duration": first - started_ns,
        "eval_count": output.completion_tokens,
        "eval_duration": now_ns - first,
    }


def details(model: LocalModel) -> dict[str, Any]:
    info = model.info
    return {
        "parent_model": "",
        "format": "gguf",
        "family": info.architecture,
        "families": [info.architecture],
        "parameter_size": _parameter_size(info.parameter_count),
        "quantization_level": info.quantization,
    }


def show_response(store: Store, model: LocalModel) -> dict[str, Any]:
    """``/api/show``'s answer; ``hearth show`` prints the same, local or through a server."""
    profile = store.profile(model)
    licenses = store.licenses(model)
    info = model.info
    return {
        "license": "\n\n".join(licenses),
        "modelfile": render_modelfile(model, profile, licenses),
        "parameters": render_parameters(profile.parameters),
        "template": profile.template or "",
        "system": profile.system or "",
        "messages": [{"role": role, "content": text} for role, text in profile.messages],
        "details": details(model),
        "model_info": {
            "general.architecture": info.architecture,
            "general.parameter_count": info.parameter_count,
            f"{info.architecture}.context_length": info.context_length,
            # Hearth's own keys (Ollama's model_info is open-ended).
            "hearth.name": str(model.name),
            "hearth.quantization": info.quantization,
            "hearth.license_id": info.license_id,
            "hearth.has_template": info.has_template,
            "hearth.digest": model.manifest_digest,
            "hearth.size": model.size,
            "hearth.source": info.source,
            "hearth.adapters": [path.name for path in profile.adapters],
        },
        "capabilities": ["completion"],
        "modified_at": model.modified.isoformat(),
    }


def _parameter_size(count: int) -> str:
    if count >= 10**9:
        return f"{count / 10**9:.1f}B"
    return f"{count / 10**6:.0f}M"


def tag_entry(model: LocalModel) -> dict[str, Any]:
    return {
        "name": str(model.name),
        "model": str(model.name),
        "modified_at": model.modified.isoformat(),
        "size": model.size,
        "digest": model.manifest_digest.split(":", 1)[1],
        "details": details(model),
    }
