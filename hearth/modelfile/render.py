"""Write a model back out as a Modelfile (``hearth show --modelfile``, ``/api/show``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hearth.store import LocalModel
from hearth.store.profile import ModelProfile


def render_parameters(parameters: Mapping[str, Any]) -> str:
    """``name value`` lines, as Ollama's /api/show gives them (one line per stop string)."""
    lines = []
    for name, value in sorted(parameters.items()):
        values = value if isinstance(value, list) else [value]
        lines += [f"{name} {_scalar(item)}" for item in values]
    return "\n".join(lines)


def render_modelfile(model: LocalModel, profile: ModelProfile, licenses: list[str]) -> str:
    """A Modelfile that rebuilds ``model`` (FROM its weights' blob, as Ollama writes it)."""
    lines = [
        f"# Modelfile of {model.name}, written by Hearth. To build on the model itself,",
        f"# replace FROM with: FROM {model.name}",
        f"FROM {model.model_path}",
    ]
    if profile.template is not None:
        lines.append(f"TEMPLATE {_block(profile.template)}")
    if profile.system is not None:
        lines.append(f"SYSTEM {_block(profile.system)}")
    lines += [f"PARAMETER {line}" for line in render_parameters(profile.parameters).splitlines()]
    lines += [f"MESSAGE {role} {_block(content)}" for role, content in profile.messages]
    lines += [f"ADAPTER {path}" for path in profile.adapters]
    lines += [f"LICENSE {_block(text)}" for text in licenses]
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower()


def _block(text: str) -> str:
    if '"""' in text:  # cannot be written as a block: a JSON string keeps it intact
        return json.dumps(text)
    return f'"""{text}"""'
