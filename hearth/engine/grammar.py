"""Grammars for structured output: JSON mode, JSON Schema, and user GBNF.

The JSON Schema → GBNF translation is llama-cpp-python's pure-Python port of llama.cpp's own
converter (``llama_cpp.llama_grammar``; no native code runs here). The result is checked by
llama.cpp's grammar parser when the request's sampler is built, so a schema or grammar it cannot
use fails that request alone with a ValidationError.
"""

from __future__ import annotations

import json
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
        return str(json_schema_to_gbnf(text))
    # The converter signals an unknown schema construct with a bare assert.
    except (ValueError, TypeError, KeyError, RecursionError, AssertionError) as error:
        raise ValidationError("json_schema", text[:60], f"unsupported schema: {error}") from None
