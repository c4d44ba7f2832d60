"""One place that maps Hearth's exceptions to HTTP status codes and wire error objects.

OpenAI routes answer ``{"error": {"message", "type", "param", "code"}}``; Ollama routes (from
the server issue's Ollama part on) answer ``{"error": "..."}``; Anthropic routes (/v1/messages)
answer ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth import errors

RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class WireError:
    status: int
    type: str
    code: str | None


def classify(error: errors.HearthError) -> WireError:
    """HTTP status, OpenAI error type and code for ``error``."""
    table: list[tuple[type[errors.HearthError], WireError]] = [
        (errors.ValidationError, WireError(400, "invalid_request_error", "invalid_value")),
        (
            errors.ContextOverflowError,
            WireError(400, "invalid_request_error", "context_length_exceeded"),
        ),
        (errors.TemplateError, WireError(400, "invalid_request_error", "template_error")),
        (errors.ContentFilteredError, WireError(400, "invalid_request_error", "content_filter")),
        (errors.InvalidNameError, WireError(400, "invalid_request_error", "invalid_model_name")),
        (errors.ModelfileError, WireError(400, "invalid_request_error", "invalid_modelfile")),
        (errors.InvalidDigestError, WireError(400, "invalid_request_error", "invalid_digest")),
        (
            errors.InvalidModelFileError,
            WireError(400, "invalid_request_error", "invalid_model_file"),
        ),
        (errors.ModelNotFoundError, WireError(404, "invalid_request_error", "model_not_found")),
        (errors.EngineOverloadedError, WireError(429, "rate_limit_error", "queue_full")),
        (errors.InsufficientMemoryError, WireError(503, "server_error", "insufficient_memory")),
        (errors.SourceUnavailableError, WireError(404, "invalid_request_error", "model_not_found")),
        (errors.AuthenticationError, WireError(401, "authentication_error", "invalid_api_key")),
        (errors.PermissionDeniedError, WireError(403, "permission_error", "model_not_allowed")),
        (errors.QuotaExceededError, WireError(429, "rate_limit_error", "rate_limit_exceeded")),
        (errors.DatabaseError, WireError(503, "server_error", "database_unavailable")),
    ]
    for kind, wire in table:
        if isinstance(error, kind):
            return wire
    return WireError(500, "server_error", None)


def openai_error(
    status: int,
    message: str,
    *,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def response_for(error: errors.HearthError) -> JSONResponse:
    wire = classify(error)
    param = error.param if isinstance(error, errors.ValidationError) else None
    headers = {"Retry-After": str(retry_after(error))} if wire.status == 429 else None
    return openai_error(
        wire.status, str(error), type_=wire.type, param=param, code=wire.code, headers=headers
    )


def retry_after(error: errors.HearthError) -> int:
    """Seconds a client should wait: a quota says when it frees up; the queue, one second."""
    return (
        error.retry_after if isinstance(error, errors.QuotaExceededError) else RETRY_AFTER_SECONDS
    )


def ollama_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _is_ollama(request: Request) -> bool:
    return request.url.path.startswith("/api/")


ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    type_ = ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def is_anthropic_path(path: str) -> bool:
    return path.startswith("/v1/messages")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.HearthError)
    async def hearth_error(request: Request, error: errors.HearthError) -> JSONResponse:
        if _is_ollama(request):
            status = classify(error).status
            if isinstance(error, errors.QuotaExceededError):  # a limit, not a full queue
                return ollama_error(429, str(error), {"Retry-After": str(error.retry_after)})
            return ollama_error(503 if status == 429 else status, str(error))
        if is_anthropic_path(request.url.path):
            status = classify(error).status
            retry = {"Retry-After": str(retry_after(error))} if status == 429 else None
            return anthropic_error(status, str(error), retry)
        return response_for(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        if _is_ollama(request):
            return ollama_error(400, f"{param or 'body'}: {first.get('msg', 'invalid value')}")
        if is_anthropic_path(request.url.path):
            if first.get("type") == "json_invalid":
                return anthropic_error(400, "the request body is not valid JSON")
            return anthropic_error(400, f"{param or 'body'}: {first.get('msg', 'invalid value')}")
        if first.get("type") == "json_invalid":
            return openai_error(
                400,
                "the request body is not valid JSON",
                type_="invalid_request_error",
                code="invalid_json",
            )
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid request"
        return openai_error(
            400, message, type_="invalid_request_error", param=param, code="invalid_value"
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug, not the client's fault: the traceback goes to the log (Starlette re-raises
        # after this), the client gets its API's error object, never the exception's text.
        message = "the server hit an unexpected error; its log has the details"
        if _is_ollama(request):
            return ollama_error(500, message)
        if is_anthropic_path(request.url.path):
            return anthropic_error(500, message)
        return openai_error(500, message, type_="server_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if _is_ollama(request):
            return ollama_error(error.status_code, str(error.detail))
        if is_anthropic_path(request.url.path):
            return anthropic_error(error.status_code, str(error.detail))
        type_ = "invalid_request_error" if error.status_code < 500 else "server_error"
        return openai_error(error.status_code, str(error.detail), type_=type_)
