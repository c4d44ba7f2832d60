"""Hearth's exceptions. Every error a user can cause is one of these.

The server maps them to HTTP status codes and OpenAI error objects in one place; the CLI prints
``str(error)`` as one line and exits non-zero. The tree::

    HearthError
    ├── ConfigError                 a setting or config file is invalid
    ├── ValidationError             a request parameter is out of range (names the parameter)
    ├── ModelNotFoundError          no model by that name (suggests close matches)
    ├── InvalidNameError            a model name or reference cannot be parsed
    ├── StoreError                  the model store cannot do what was asked
    │   ├── InvalidDigestError      a digest is not ``sha256:<64 hex>``
    │   ├── DigestMismatchError     content does not hash to the digest it claims
    │   └── InvalidModelFileError   a file is not a usable GGUF (truncated, corrupt, wrong format)
    ├── SourceUnavailableError      a source (package, hub, registry) cannot provide the model
    └── EngineError                 the inference engine failed
        ├── ModelLoadError          llama.cpp refused the model file
        ├── ContextOverflowError    the prompt does not fit the context window
        └── TemplateError           a chat template failed to render (or ran too long)
"""

from __future__ import annotations


class HearthError(Exception):
    """Base class of every error Hearth raises on purpose."""


class ConfigError(HearthError):
    pass


class ValidationError(HearthError, ValueError):
    """A parameter is invalid; ``param`` names it so the API can put it in the error object."""

    def __init__(self, param: str, value: object, reason: str) -> None:
        self.param = param
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {param}={value!r}: {reason}")


class ModelNotFoundError(HearthError):
    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = suggestions or []
        hint = f" (did you mean {', '.join(self.suggestions)}?)" if self.suggestions else ""
        super().__init__(f"model {name!r} not found{hint}")


class InvalidNameError(HearthError, ValueError):
    pass


class StoreError(HearthError):
    pass


class InvalidDigestError(StoreError, ValueError):
    pass


class DigestMismatchError(StoreError):
    pass


class InvalidModelFileError(StoreError):
    pass


class SourceUnavailableError(HearthError):
    pass


class EngineError(HearthError):
    pass


class ModelLoadError(EngineError):
    pass


class ContextOverflowError(EngineError):
    pass


class TemplateError(EngineError):
    pass
