"""A typed client for a running Hearth server (the CLI uses it when a server is up).

It speaks the server's Ollama-compatible routes, which stream NDJSON. Errors come back as
HearthError subclasses with the server's message, so the CLI prints them as one line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class StoredModel:
    """A model in the server's store, as ``/api/tags`` lists it."""

    name: str
    digest: str  # the manifest's sha256, hex
    size: int
    quantization: str
    modified_at: str  # ISO 8601


@dataclass(frozen=True)
class PullProgress:
    status: str
    completed: int | None
    total: int | None


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

    def models(self) -> list[StoredModel]:
        response = self._http.get("/api/tags")
        _raise_for(response)
        return [
            StoredModel(
                m["name"],
                m["digest"],
                int(m["size"]),
                m.get("details", {}).get("quantization_level", ""),
                m["modified_at"],
            )
            for m in response.json()["models"]
        ]

    def show(self, model: str) -> dict[str, Any]:
        response = self._http.post("/api/show", json={"model": model})
        _raise_for(response)
        shown: dict[str, Any] = response.json()
        return shown

    def pull(self, model: str, *, insecure: bool = False) -> Iterator[PullProgress]:
        body = {"model": model, "stream": True, "insecure": insecure}
        for line in self._lines("/api/pull", body):
            yield PullProgress(
                str(line.get("status", "")), line.get("completed"), line.get("total")
            )

    def delete(self, model: str) -> None:
        _raise_for(self._http.request("DELETE", "/api/delete", json={"model": model}))

    def copy(self, source: str, destination: str) -> None:
        body = {"source": source, "destination": destination}
        _raise_for(self._http.post("/api/copy", json=body))

    def upload_blob(self, path: Path) -> str:
        """Send a local file to the server's blob store (unless it has it); its digest."""
        digest = file_digest(path)
        if self._http.head(f"/api/blobs/{digest}").status_code != 200:
            with path.open("rb") as file:
                _raise_for(self._http.post(f"/api/blobs/{digest}", content=file))
        return digest

    def create(self, body: dict[str, Any]) -> Iterator[str]:
        """``POST /api/create``; yields the status lines."""
        for line in self._lines("/api/create", {**body, "stream": True}):
            yield str(line.get("status", ""))

    def _lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """An NDJSON stream's objects; an error line raises ServerError."""
        with self._http.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                response.read()
                _raise_for(response)
            for raw in response.iter_lines():
                if not raw.strip():
                    continue
                line: dict[str, Any] = json.loads(raw)
                if "error" in line:
                    raise ServerError(str(line["error"]))
                yield line

    def _stream(self, path: str, body: dict[str, Any], text_of: Any) -> Iterator[Chunk]:
        for line in self._lines(path, body):
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


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"
