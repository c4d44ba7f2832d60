"""Ollama's model-building routes: ``POST /api/create`` and ``HEAD|POST /api/blobs/{digest}``.

A client uploads local files (a GGUF, a LoRA adapter) as blobs first, then names them by digest
in ``files`` and ``adapters``, as the official ``ollama`` client's ``create_blob`` and ``create``
do. The older form, a whole Modelfile in ``modelfile``, is accepted too.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from hearth.errors import DigestMismatchError, ValidationError
from hearth.modelfile import ModelfileError, Recipe, parse_modelfile
from hearth.modelfile.create import create_model
from hearth.server.deps import manager_of
from hearth.server.ollama.schemas import CreateRequest
from hearth.store import Store, validate_digest

router = APIRouter(prefix="/api")


@router.head("/blobs/{digest}")
async def blob_exists(digest: str, request: Request) -> Response:
    store = manager_of(request).store
    return Response(status_code=200 if store.blobs.has(validate_digest(digest)) else 404)


@router.post("/blobs/{digest}")
async def upload_blob(digest: str, request: Request) -> Response:
    """Store the request body as a blob; it must hash to ``digest`` or nothing is kept."""
    store = manager_of(request).store
    expected = validate_digest(digest)
    if store.blobs.has(expected):
        return Response(status_code=200)
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
    writer = asyncio.create_task(asyncio.to_thread(_write_blob, store, expected, chunks))
    try:
        async for chunk in request.stream():
            await asyncio.to_thread(chunks.put, chunk)
    finally:
        await asyncio.to_thread(chunks.put, None)
    try:
        await writer
    except DigestMismatchError as error:
        raise ValidationError("digest", digest, f"the upload does not match it ({error})") from None
    return Response(status_code=201)


def _write_blob(store: Store, digest: str, chunks: queue.Queue[bytes | None]) -> None:
    def body() -> Iterator[bytes]:
        while (chunk := chunks.get()) is not None:
            yield chunk

    # No store lock: a write in progress is a temp file, and the finished blob is renamed in
    # at once (holding the lock through a large upload would stall every pull and create).
    store.blobs.write_stream(body(), expected=digest)


@router.post("/create", response_model=None)
async def create(body: CreateRequest, request: Request) -> Any:
    store = manager_of(request).store
    name = body.target()
    if not name:
        raise ValidationError("model", name, "name the model to create")
    recipe = _recipe(body, store)
    if not body.stream:
        await asyncio.to_thread(create_model, store, name, recipe)
        return {"status": "success"}
    return StreamingResponse(_status_lines(store, name, recipe), media_type="application/x-ndjson")


async def _status_lines(store: Store, name: str, recipe: Recipe) -> AsyncIterator[bytes]:
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            create_model(store, name, recipe, lambda message: lines.put(message))
        except BaseException as error:
            errors.append(error)
        finally:
            lines.put(None)

    threading.Thread(target=run, name="hearth-create", daemon=True).start()

    def messages() -> Iterator[str]:
        while (message := lines.get()) is not None:
            yield message

    async for message in iterate_in_threadpool(messages()):
        yield (json.dumps({"status": message}) + "\n").encode()
    if errors:
        yield (json.dumps({"error": str(errors[0])}) + "\n").encode()


def _recipe(body: CreateRequest, store: Store) -> Recipe:
    """The request as a Recipe; uploaded blobs stand in for local files."""
    recipe = parse_modelfile(body.modelfile) if body.modelfile else Recipe(base=body.from_ or "")
    base_file = _single_gguf(body.files, store)
    if base_file is not None:
        recipe.base, recipe.base_is_path = str(base_file), True
    if body.quantize:
        raise ValidationError("quantize", body.quantize, "quantize after creating: hearth quantize")
    recipe.adapters += [_blob_path(store, name, digest) for name, digest in body.adapters.items()]
    if body.system is not None:
        recipe.system = body.system
    if body.template is not None:
        recipe.template = body.template
    if body.parameters:
        recipe.parameters.update(body.parameters)
    if body.messages is not None:
        recipe.messages = [(m.role, m.content) for m in body.messages]
    recipe.licenses += [body.license] if isinstance(body.license, str) else body.license or []
    return recipe


def _single_gguf(files: dict[str, str], store: Store) -> Path | None:
    if not files:
        return None
    ggufs = [name for name in files if name.lower().endswith(".gguf")]
    if len(files) != 1 or len(ggufs) != 1:
        raise ModelfileError(
            "files must name exactly one GGUF file; convert safetensors with hearth import"
        )
    return _blob_path(store, ggufs[0], files[ggufs[0]])


def _blob_path(store: Store, filename: str, digest: str) -> Path:
    checked = validate_digest(digest)
    if not store.blobs.has(checked):
        raise ModelfileError(f"{filename}: blob {checked} was not uploaded (POST /api/blobs)")
    return store.blobs.path(checked)
