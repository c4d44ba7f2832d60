"""Pure conversions between Ollama wire types and engine / store types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hearth.engine.grammar import json_object_grammar, json_schema_grammar
from hearth.engine.request import RequestOutput
from hearth.engine.sampling import SamplingParams
from hearth.engine.templates import ChatMessage
from hearth.errors import ValidationError
from hearth.server.ollama.schemas import ChatRequest, GenerateRequest, Options
from hearth.store import LocalModel


def sampling_params(options: Options | None, format_: Any) -> SamplingParams:
    given = options.model_dump(exclude_none=True) if options is not None else {}
    num_predict = given.pop("num_predict", None)
    if num_predict is not None and num_predict > 0:
        given["max_tokens"] = num_predict
    elif num_predict is not None and num_predict not in (-1, -2):
        raise ValidationError("num_predict", num_predict, "must be positive, or -1 for no limit")
    given["grammar"] = _grammar(format_)
    return SamplingParams.from_mapping(given)


def _grammar(format_: Any) -> str | None:
    if format_ in (None, ""):
        return None
    if format_ == "json":
        return json_object_grammar()
    return json_schema_grammar(format_)


def generate_prompt(body: GenerateRequest) -> str:
    if body.template is not None:
        raise ValidationError("template", "…", "templates come from the model, not a request")
    prompt = body.prompt or ""
    return f"{body.system}\n\n{prompt}" if body.system and not body.raw else prompt


def chat_messages(body: ChatRequest) -> list[ChatMessage]:
    return [ChatMessage(m.role, m.content) for m in body.messages]


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
