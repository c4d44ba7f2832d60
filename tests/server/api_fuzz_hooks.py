"""Schemathesis hooks for ``test_api_fuzz.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Generated model names almost never exist, so most cases would stop at "model not found";
here every string ``model`` field names a real model, so generated sampling parameters, messages
and tools reach the engine. Deletions go to a model kept for them. Sizes that only cost time
(tokens to generate, choices, context) are capped, so a case takes milliseconds on the tiny
model: their bounds are checked by the coverage phase's out-of-range values, which stay.
"""

from __future__ import annotations

from typing import Any

import schemathesis

FUZZ_MODEL = "tiny"
VICTIM_MODEL = "victim"  # what /api/delete may delete
CAPS = {
    "max_tokens": 16,
    "max_completion_tokens": 16,
    "max_output_tokens": 16,
    "num_predict": 16,
    "n": 2,
    "num_ctx": 256,
}


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: Any
) -> None:
    target = VICTIM_MODEL if case.operation.path == "/api/delete" else FUZZ_MODEL
    body = case.body
    if isinstance(body, dict):
        if isinstance(body.get("model"), str):
            body["model"] = target
        _cap(body)
        options = body.get("options")
        if isinstance(options, dict):
            _cap(options)
    if isinstance(case.path_parameters, dict) and "model_id" in case.path_parameters:
        case.path_parameters["model_id"] = FUZZ_MODEL


def _cap(fields: dict[str, Any]) -> None:
    for name, cap in CAPS.items():
        value = fields.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            fields[name] = cap
