"""What a model brings besides its weights: the layers a Modelfile adds.

A :class:`ModelProfile` is read from a model's SYSTEM, TEMPLATE, PARAMS, MESSAGES and ADAPTER
layers; the engine applies it to every request (``hearth create`` writes those layers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import StoreError


@dataclass(frozen=True)
class ModelProfile:
    system: str | None = None  # used when a conversation brings no system message
    template: str | None = None  # a Jinja chat template replacing the GGUF's own
    parameters: Mapping[str, Any] = field(default_factory=dict)  # Ollama's names
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) put before every chat
    adapters: tuple[Path, ...] = ()  # LoRA adapters (GGUF), applied at scale 1

    @property
    def is_plain(self) -> bool:
        return self == ModelProfile()


def parse_parameters(data: bytes, origin: str) -> dict[str, Any]:
    value = _json(data, origin)
    if not isinstance(value, dict):
        raise StoreError(f"{origin}: parameters must be a JSON object")
    return value


def parse_messages(data: bytes, origin: str) -> tuple[tuple[str, str], ...]:
    value = _json(data, origin)
    if not isinstance(value, list):
        raise StoreError(f"{origin}: messages must be a JSON list")
    messages = []
    for item in value:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("role"), str)
            and isinstance(item.get("content"), str)
        ):
            raise StoreError(f"{origin}: each message needs a string role and content")
        messages.append((item["role"], item["content"]))
    return tuple(messages)


def messages_json(messages: tuple[tuple[str, str], ...]) -> bytes:
    return json.dumps([{"role": r, "content": c} for r, c in messages]).encode()


def parameters_json(parameters: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(parameters), sort_keys=True).encode()


def _json(data: bytes, origin: str) -> object:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"{origin}: not JSON ({error})") from None
