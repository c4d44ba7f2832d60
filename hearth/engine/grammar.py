"""Grammars for structured output: JSON mode, JSON Schema, and user GBNF.

The JSON Schema → GBNF translation is llama-cpp-python's pure-Python port of llama.cpp's own
converter (``llama_cpp.llama_grammar``; no native code runs here). The result is checked by
llama.cpp's grammar parser when the request's sampler is built, so a schema or grammar it cannot
use fails that request alone with a ValidationError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from hearth.errors import ValidationError

MAX_SCHEMA_CHARS = 100_000


def json_object_grammar() -> str:
    """Any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)."""
    return str(JSON_GBNF)


def json_schema_grammar(schema: Mapping[str, Any] | str) -> str:
    """GBNF accepting exactly the JSON documents valid under ``schema``."""
    text = schema if isinstance(schema, str) else json.dumps(schema)
    if len(text) > MAX_SCHEMA_CHARS:
        raise ValidationError(
            "json_schema", text[:40] + "…", f"longer than {MAX_SCHEMA_CHARS} characters"
        )
    try:
        rules = str(json_schema_to_gbnf(text))

    # The converter signals an unknown schema construct with a bare assert.
    except (ValueError, TypeError, KeyError, RecursionError, AssertionError) as error:
        raise ValidationError("json_schema", text[:60], f"unsupported schema: {error}") from None
    # The port's string characters admit raw control characters, which JSON forbids (llama.cpp's
    # own converter excludes them): without this, "valid" output would fail json.loads.
    return rules.replace('char ::= [^"\\\\] |', 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |', 1)


def tool_call_grammar(tools: list[dict[str, Any]], name: str | None = None) -> str:
    """A Hermes-style ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` whose name is
    one of ``tools`` (or exactly ``name``) and whose arguments follow that tool's schema: used
    when tool_choice demands a call, so the model cannot answer with anything else."""
    chosen = [t for t in tools if name is None or t["name"] == name]
    if not chosen:
        raise ValidationError("tool_choice", name, "names no tool in tools")
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool["name"]},
                "arguments": tool.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for tool in chosen
    ]
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    rules = re.sub(r"^root ::=", "tool-call ::=", json_schema_grammar(schema), count=1, flags=re.M)
    return rules + '\nroot ::= "<tool_call>" tool-call "</tool_call>"\n'
