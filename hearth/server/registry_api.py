"""The OCI distribution API, read-only, so one Hearth can pull models from another.

``/v2/<namespace>/<name>/...`` maps onto the local names ``<namespace>/<name>:<tag>`` of the
default host (``hearth.local``): ``hearth pull 10.0.0.5:11435/library/gemma3:270m`` on another
machine fetches this server's ``gemma3:270m``. Manifests are served as stored, so the model
keeps its ID. Errors use the spec's ``{"errors": [{"code", "message", "detail"}]}`` form; writes
answer 405 ``UNSUPPORTED``. Like every route but /health, these need an API key once keys
exist; the 401 carries a ``WWW-Authenticate: Bearer`` challenge, and a pulling Hearth answers
it with ``HEARTH_REGISTRY_AUTH=<key>``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from hearth.errors import (
    AuthenticationError,
    HearthError,
    InvalidDigestError,
    InvalidNameError,
    PermissionDeniedError,
)
from hearth.server.auth import check_model
from hearth.store import Manifest, Store
from hearth.store.digest import digest_bytes, validate_digest
from hearth.store.manifest import MediaType
from hearth.store.names import DEFAULT_HOST, ModelName, parse_name

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}

router = APIRouter(prefix="/v2")


class RegistryAPIError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


def registry_error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return JSONResponse(body, status_code=status, headers={**API_VERSION_HEADER, **headers})


def install_registry_api(app: FastAPI) -> None:
    """Add the /v2 routes, and answer a missing key on them the registry way (with a challenge)
    while every other path keeps the app's own 401."""
    app.include_router(router)
    fallback = app.exception_handlers[HearthError]

    async def unauthorized(request: Request, error: Exception) -> Response:
        if not request.url.path.startswith("/v2"):
            answer = fallback(request, error)
            return await answer if inspect.isawaitable(answer) else answer
        realm = str(request.url_for("registry_base"))
        challenge = f'Bearer realm="{realm}",service="hearth"'
        return registry_error(401, "UNAUTHORIZED", str(error), **{"WWW-Authenticate": challenge})

    app.add_exception_handler(AuthenticationError, unauthorized)
    app.add_exception_handler(RegistryAPIError, _registry_api_error)


async def _registry_api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RegistryAPIError)
    return registry_error(error.status, error.code, error.message)


@router.get("/", name="registry_base")
def base() -> Response:
    return JSONResponse({}, headers=API_VERSION_HEADER)


# One route per method: a route with two methods gives both the same OpenAPI operationId.
@router.get("/{namespace}/{name}/manifests/{reference}")
@router.head("/{namespace}/{name}/manifests/{reference}")
def manifest(request: Request, namespace: str, name: str, reference: str) -> Response:
    store = _store(request)
    if reference.startswith("sha256:"):
        model, data = _manifest_by_digest(store, namespace, name, reference)
    else:
        model = _local_name(namespace, name, reference)
        data = _read_manifest(store, model)
    _check_allowed(request, model)
    headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest_bytes(data)}
    body = b"" if request.method == "HEAD" else data
    headers["Content-Length"] = str(len(data))
    return Response(body, media_type=MediaType.MANIFEST, headers=headers)


@router.get("/{namespace}/{name}/blobs/{digest}")
@router.head("/{namespace}/{name}/blobs/{digest}")
def blob(request: Request, namespace: str, name: str, digest: str) -> Response:
    try:
        validate_digest(digest)
    except InvalidDigestError as error:
        raise RegistryAPIError(400, "DIGEST_INVALID", str(error)) from None
    store = _store(request)
    model = _tag_referencing(store, namespace, name, digest)
    _check_allowed(request, model)
    path = store.blobs.path(digest)
    if not path.is_file():
        raise RegistryAPIError(404, "BLOB_UNKNOWN", f"blob {digest} is not stored")
    headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest}
    # FileResponse answers Range requests (206), which is what resumes a download.
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


@router.get("/{namespace}/{name}/tags/list")
def tags(request: Request, namespace: str, name: str) -> Response:
    found = _repository_tags(_store(request), namespace, name)
    if not found:
        raise RegistryAPIError(404, "NAME_UNKNOWN", f"no repository {namespace}/{name}")
    _check_allowed(request, found[0])
    body = {"name": f"{namespace}/{name}", "tags": [model.tag for model in found]}
    return JSONResponse(body, headers=API_VERSION_HEADER)


@router.api_route(
    "/{path:path}",
    methods=["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"],
    include_in_schema=False,  # not part of the API: the spec's answers to everything else
)
def other(request: Request, path: str) -> Response:
    """Writes are refused; any other path is not part of the API (the spec's 404 form)."""
    if request.method not in ("GET", "HEAD"):
        return registry_error(405, "UNSUPPORTED", "this Hearth registry is read-only")
    return registry_error(404, "NAME_UNKNOWN", f"no such registry path /v2/{path}")


# Helpers -------------------------------------------------------------------------------------


def _store(request: Request) -> Store:
    store: Store = request.app.state.manager.store
    return store


def _local_name(namespace: str, name: str, tag: str) -> ModelName:
    try:
        return parse_name(f"{DEFAULT_HOST}/{namespace}/{name}:{tag}")
    except InvalidNameError as error:
        raise RegistryAPIError(400, "NAME_INVALID", str(error)) from None


def _read_manifest(store: Store, model: ModelName) -> bytes:
    try:
        return model.manifest_path(store.manifests_dir).read_bytes()
    except OSError:
        raise RegistryAPIError(404, "MANIFEST_UNKNOWN", f"no model {model}") from None


def _repository_tags(store: Store, namespace: str, name: str) -> list[ModelName]:
    """Every tag stored under ``namespace/name``, sorted."""
    folder = _local_name(namespace, name, "latest").manifest_path(store.manifests_dir).parent
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        try:
            model = parse_name(f"{DEFAULT_HOST}/{namespace}/{name}:{entry.name}")
        except InvalidNameError:
            continue
        if entry.is_file() and model.manifest_path(store.manifests_dir) == entry:
            found.append(model)
    return found


def _manifest_by_digest(
    store: Store, namespace: str, name: str, digest: str
) -> tuple[ModelName, bytes]:
    try:
        validate_digest(digest)
    except InvalidDigestError as error:
        raise RegistryAPIError(400, "DIGEST_INVALID", str(error)) from None
    for model in _repository_tags(store, namespace, name):
        data = _read_manifest(store, model)
        if digest_bytes(data) == digest:
            return model, data
    raise RegistryAPIError(404, "MANIFEST_UNKNOWN", f"no manifest {digest} in {namespace}/{name}")


def _tag_referencing(store: Store, namespace: str, name: str, digest: str) -> ModelName:
    """A tag of the repository whose manifest references ``digest``: a blob is served only
    through a model that uses it (so a key scoped to one model cannot read another's)."""
    for model in _repository_tags(store, namespace, name):
        path: Path = model.manifest_path(store.manifests_dir)
        try:
            manifest = Manifest.from_json(path.read_bytes(), path)
        except (OSError, HearthError):
            continue
        if digest in manifest.digests():
            return model
    raise RegistryAPIError(404, "BLOB_UNKNOWN", f"blob {digest} is not part of {namespace}/{name}")


def _check_allowed(request: Request, model: ModelName) -> None:
    try:
        check_model(request, str(model))
    except PermissionDeniedError as error:
        raise RegistryAPIError(403, "DENIED", str(error)) from None
