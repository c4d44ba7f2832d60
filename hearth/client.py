"""A typed client for a running Hearth server (the CLI uses it when a server is up).

It speaks the server's Ollama-compatible routes, which stream NDJSON. Errors come back as
HearthError subclasses with the server's message, so the CLI prints them as one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from hearth.errors import HearthError

HEALTH_TIMEOUT = 0.5  # seconds: the CLI asks before every command, so a dead host must fail fast


class ServerError(HearthError):
    """The server answered with an error."""


@dataclass(frozen=True)
class Chunk:
    text: str
    done: bool
    done_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class LoadedModel:
    name: str
    size: int
    context_length: int | None
    expires_at: str


class HearthClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 600) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> HearthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def is_up(self) -> bool:
        try:
            return self._http.get("/health", timeout=HEALTH_TIMEOUT).status_code == 200
        except httpx.TransportError:
            return False

    def generate(self, model: str, prompt: str, options: dict[str, Any]) -> Iterator[Chunk]:
        body = {"model": model, "prompt": prompt, "options": options, "stream": True}
        yield from self._stream("/api/generate", body, lambda line: line.get("response", ""))

    def chat(
        self, model: str, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> Iterator[Chunk]:
        body = {"model": model, "messages": messages, "options": options, "stream": True}
        yield from self._stream(
            "/api/chat", body, lambda line: line.get("message", {}).get("content", "")
        )

    def loaded(self) -> list[LoadedModel]:
        response = self._http.get("/api/ps")
        _raise_for(response)
        return [
            LoadedModel(m["name"], int(m["size"]), m.get("context_length"), m["expires_at"])
            for m in response.json()["models"]
        ]

    def _stream(self, path: str, body: dict[str, Any], text_of: Any) -> Iterator[Chunk]:
        with self._http.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                response.read()
                _raise_for(response)
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                if "error" in line:
                    raise ServerError(str(line["error"]))
                yield Chunk(
                    text=str(text_of(line)),
                    done=bool(line.get("done")),
                    done_reason=line.get("done_reason"),
                    prompt_tokens=int(line.get("prompt_eval_count") or 0),
                    completion_tokens=int(line.get("eval_count") or 0),
                )


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = str(response.json().get("error", response.text))
    except ValueError:
        message = response.text
    raise ServerError(message if response.status_code < 500 else f"server error: {message}")
