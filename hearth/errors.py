"""Hearth's exceptions. Every error a user can cause is one of these.

The server maps them to HTTP status codes and OpenAI error objects in one place; the CLI prints
``str(error)`` as one line and exits non-zero. The tree::

    HearthError
    ├── ConfigError                 a setting or config file is invalid
    │   └── UnsafePatternError      a safety pattern is invalid or risks catastrophic backtracking
    ├── ValidationError             a request parameter is out of range (names the parameter)
    ├── ModelNotFoundError          no model by that name (suggests close matches)
    ├── InvalidNameError            a model name or reference cannot be parsed
    ├── ModelfileError              a Modelfile or create request cannot be used (says where)
    ├── StoreError                  the model store cannot do what was asked
    │   ├── InvalidDigestError      a digest is not ``sha256:<64 hex>``
    │   ├── DigestMismatchError     content does not hash to the digest it claims
    │   ├── InvalidModelFileError   a file is not a usable GGUF (truncated, corrupt, wrong format)
    │   │   └── MalformedFileError  a GGUF/safetensors header out of the format's bounds
    │   ├── ConversionError         a Hugging Face folder cannot be converted to GGUF
    │   ├── QuantizationError       llama.cpp cannot quantize a model (says why)
    │   ├── IncompleteDownloadError a download ended early; its partial file is kept to resume
    │   └── InvalidBundleError      a bundle (OCI image-layout tar) is malformed or unsafe
    ├── SourceUnavailableError      a source (package, hub, registry) cannot provide the model
    │   └── RegistryError           an OCI registry refused or failed a request (auth, 404, 5xx)
    ├── AuthenticationError         no API key, or an unknown, revoked or expired one (HTTP 401)
    ├── PermissionDeniedError       a valid API key that may not use this model (HTTP 403)
    │   └── LicenseDeniedError      the license policy refuses a model (says which clause)
    ├── QuotaExceededError          a key or team is over a rate limit, quota or budget (HTTP 429)
    ├── ContentFilteredError        safety rules blocked a request's input (names the rule; 400)
    ├── DatabaseError               the keys/usage database cannot be reached or used
    ├── FinetuneError               a fine-tune cannot start, continue or be registered (says why)
    │   ├── DatasetError            training data has bad lines (each listed with its number)
    │   └── JobNotFoundError        no fine-tuning job by that id
    ├── EvalError                   an evaluation cannot run (a model that cannot answer, no judge)
    └── EngineError                 the inference engine failed
        ├── ModelLoadError          llama.cpp refused the model file
        ├── ContextOverflowError    the prompt does not fit the context window
        ├── EngineOverloadedError   the request queue is full (HTTP 503, retry later)
        ├── InsufficientMemoryError a model does not fit the memory budget (HEARTH_MAX_MEMORY)
        └── TemplateError           a chat template failed to render (or ran too long)
"""

from __future__ import annotations


class HearthError(Exception):
    """Base class of every error Hearth raises on purpose."""


class ConfigError(HearthError):
    pass


class UnsafePatternError(ConfigError):
    """A blocklist entry or regular expression in hearth.toml [safety] is refused: invalid, or
    a construct that backtracks catastrophically (the message says where and why)."""


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


class ModelfileError(HearthError, ValueError):
    """A Modelfile (or a create request) cannot be used; the message says where and why."""


class StoreError(HearthError):
    pass


class InvalidDigestError(StoreError, ValueError):
    pass


class DigestMismatchError(StoreError):
    pass


class InvalidModelFileError(StoreError):
    pass


class MalformedFileError(InvalidModelFileError):
    """A GGUF or safetensors header that a parser must not trust: a count, length, offset or
    dimension out of bounds, an unknown type, overlapping tensors (the message names which)."""


class ConversionError(StoreError):
    """A model folder cannot be converted: unsupported architecture, pickle weights, bad files."""


class QuantizationError(StoreError):
    """llama.cpp refused to quantize a model (its log line says why), or a bad importance matrix."""


class IncompleteDownloadError(StoreError):
    """The transfer stopped before ``size`` bytes; the partial file stays, to be resumed."""


class InvalidBundleError(StoreError):
    """A bundle is not an OCI image layout, lacks a blob, or has a member outside the layout."""


class SourceUnavailableError(HearthError):
    pass


class RegistryError(SourceUnavailableError):
    """An OCI registry answered with an error, or could not be reached."""


class AuthenticationError(HearthError):
    """The request carries no usable API key; the message says why, never which keys exist."""


class PermissionDeniedError(HearthError):
    """The API key is valid but not allowed to do this (e.g. use this model)."""


class LicenseDeniedError(PermissionDeniedError):
    """The organisation's license policy (hearth.toml [policy]) refuses this model; the message
    names the decision and the clause that decided it."""


class ContentFilteredError(HearthError):
    """The safety pipeline blocked a request's input; ``rule`` names the rule that fired."""

    def __init__(self, rule: str, direction: str = "input") -> None:
        self.rule = rule
        self.direction = direction
        super().__init__(f"the request's {direction} was blocked by safety rule {rule!r}")


class QuotaExceededError(HearthError):
    """A key or team is over ``limit`` (``rpm``, ``monthly_tokens``, ...); the client may
    retry after ``retry_after`` seconds (sent as the Retry-After header)."""

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = max(1, retry_after)
        super().__init__(message)


class DatabaseError(HearthError):
    """The database (HEARTH_DATABASE_URL) is unreachable or refused an operation."""


class FinetuneError(HearthError):
    """A fine-tune cannot start, continue or be registered; the message says why."""


class DatasetError(FinetuneError, ValueError):
    """Training or evaluation data is unusable; ``problems`` lists each bad line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "; ".join(problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} bad example(s): {shown}{more}")


class JobNotFoundError(FinetuneError):
    pass


class EvalError(HearthError):
    """``hearth eval`` cannot run as asked: a model that is not a causal LM, a judge scorer with
    no judge model, ...; the message says why. (Bad test-set lines are DatasetErrors.)"""


class EngineError(HearthError):
    pass


class ModelLoadError(EngineError):
    pass


class ContextOverflowError(EngineError):
    pass


class EngineOverloadedError(EngineError):
    pass


class InsufficientMemoryError(EngineError):
    """A model needs more memory than the budget leaves, even after unloading every idle model."""

    def __init__(self, message: str, *, need: int, budget: int, in_use: int = 0) -> None:
        self.need = need
        self.budget = budget
        self.in_use = in_use  # bytes held by models that are busy or loading
        super().__init__(message)


class TemplateError(EngineError):
    pass
