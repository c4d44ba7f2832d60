"""A model's default parameters, in Ollama's vocabulary (``PARAMETER temperature 0.2``).

Stored as JSON in the model's PARAMS layer with Ollama's names, so ``/api/show`` returns them as
Ollama does. Sampling parameters become defaults for every request that does not set them;
``num_ctx`` sets the context the model is loaded with. Load-time knobs of Ollama's that Hearth
decides itself (GPU layers, threads, mmap, ...) are accepted and ignored, with a warning, so
existing Modelfiles still work; any other name is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hearth.engine.sampling import SamplingParams
from hearth.errors import ValidationError

# Ollama name → SamplingParams field.
SAMPLING = {
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "num_predict": "max_tokens",
    "stop": "stop",
    # Speculative decoding (docs/SPECULATIVE.md): ngram | off | draft:<model>, and llama-server's
    # --draft-max.
    "speculative": "speculative",
    "draft_max": "draft_max",
}
LOAD = frozenset({"num_ctx"})
IGNORED = frozenset(
    {
        "num_gpu",
        "main_gpu",
        "num_thread",
        "num_batch",
        "num_keep",
        "use_mmap",
        "use_mlock",
        "numa",
        "low_vram",
        "penalize_newline",
        "mirostat",
        "mirostat_eta",
        "mirostat_tau",
        "tfs_z",
    }
)
_INTEGERS = frozenset(
    {"top_k", "repeat_last_n", "seed", "num_predict", "num_ctx", "num_keep", "draft_max"}
)
_INTEGERS |= {"num_gpu", "main_gpu", "num_thread", "num_batch", "mirostat"}
_BOOLEANS = frozenset({"use_mmap", "use_mlock", "numa", "low_vram", "penalize_newline"})
MAX_CONTEXT = 1 << 20


def known_names() -> str:
    return ", ".join(sorted({*SAMPLING, *LOAD}))


def parse_value(name: str, raw: str) -> Any:
    """One ``PARAMETER name value`` of a Modelfile, typed (stop stays a string)."""
    _check_name(name)
    if name in ("stop", "speculative"):
        return raw
    if name in _BOOLEANS:
        if raw.lower() not in ("true", "false"):
            raise ValidationError(name, raw, "must be true or false")
        return raw.lower() == "true"
    try:
        return int(raw) if name in _INTEGERS else float(raw)
    except ValueError:
        kind = "an integer" if name in _INTEGERS else "a number"
        raise ValidationError(name, raw, f"must be {kind}") from None


def normalise(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Checked parameters to store, and the names that are ignored (for a warning).

    Values are validated as a request's would be, so a bad default fails when the model is
    created, not on its first request.
    """
    kept: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in parameters.items():
        _check_name(name)
        if name in IGNORED:
            ignored.append(name)
            continue
        kept[name] = _stop_list(value) if name == "stop" else value
    sampling_defaults(kept)  # raises ValidationError naming the bad value
    context_length(kept)
    return kept, ignored


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A derived model's parameters: the base's, overridden name by name."""
    return {**base, **changes}


def sampling_defaults(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The stored parameters as SamplingParams fields (validated)."""
    defaults = {SAMPLING[name]: value for name, value in parameters.items() if name in SAMPLING}
    if defaults.get("max_tokens") in (-1, -2):  # Ollama: no limit / fill the context
        defaults["max_tokens"] = None
    if draft_model_name(parameters) is not None:
        defaults["speculative"] = "draft"
    SamplingParams.from_mapping(defaults)
    return defaults


def draft_model_name(parameters: Mapping[str, Any]) -> str | None:
    """The draft model of ``PARAMETER speculative draft:<model>``, if the model names one."""
    value = parameters.get("speculative")
    if not isinstance(value, str) or not value.startswith("draft:"):
        return None
    name = value.removeprefix("draft:").strip()
    if not name:
        raise ValidationError("speculative", value, "name the draft model: draft:<model>")
    return name


def context_length(parameters: Mapping[str, Any]) -> int | None:
    value = parameters.get("num_ctx")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 16 <= value <= MAX_CONTEXT:
        raise ValidationError("num_ctx", value, f"must be an integer from 16 to {MAX_CONTEXT}")
    return value


def apply_defaults(params: SamplingParams, defaults: Mapping[str, Any]) -> SamplingParams:
    """``params`` with the model's defaults for every field the request did not choose
    (``params.explicit``; None means it chose them all)."""
    if params.explicit is None or not defaults:
        return params
    changes = {name: value for name, value in defaults.items() if name not in params.explicit}
    if "stop" in changes:
        changes["stop"] = tuple(changes["stop"])
    return params.updated(**changes) if changes else params


def _check_name(name: str) -> None:
    if name not in SAMPLING and name not in LOAD and name not in IGNORED:
        raise ValidationError(name, None, f"unknown parameter; known: {known_names()}")


def _stop_list(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ValidationError("stop", value, "must be a string or a list of non-empty strings")
    return values
