"""Every setting Hearth reads, in one place.

No other module reads ``os.environ``; they receive a :class:`Settings` (usually from
:func:`get_settings`). Each environment variable is listed in :data:`ENVIRONMENT` with its
default and meaning, and ``hearth env`` prints that table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import ConfigError

_Getter = Callable[[str], str]


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("HEARTH_HOME", "~/.hearth", "Store root: blobs/, manifests/, hearth.db, hearth.toml."),
    EnvVar("HEARTH_HOST", "127.0.0.1:11435", "Address `hearth serve` binds and the client calls."),
    EnvVar("HEARTH_THREADS", "0", "llama.cpp threads per model; 0 means one per CPU core."),
    EnvVar("HEARTH_CONTEXT", "4096", "Context length (tokens) per sequence; capped by the model."),
    EnvVar("HEARTH_MAX_SEQS", "16", "Sequences one loaded model decodes together."),
    EnvVar("HEARTH_BATCH", "512", "Token budget of one engine step (prompt chunks + decodes)."),
    EnvVar("HEARTH_LOG_LEVEL", "WARNING", "Log level: DEBUG, INFO, WARNING, ERROR."),
    EnvVar("HEARTH_LLAMA_LOG", "0", "1 lets llama.cpp print its own (verbose) log to stderr."),
)

_DEFAULTS = {var.name: var.default for var in ENVIRONMENT}


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str
    threads: int
    context: int
    max_seqs: int
    batch: int
    log_level: str
    llama_log: bool

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.home / "manifests"

    @property
    def effective_threads(self) -> int:
        return self.threads or (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env

        def get(name: str) -> str:
            return source.get(name, "") or _DEFAULTS[name]

        return cls(
            home=Path(get("HEARTH_HOME")).expanduser(),
            host=get("HEARTH_HOST"),
            threads=_int(get, "HEARTH_THREADS", minimum=0),
            context=_int(get, "HEARTH_CONTEXT", minimum=16),
            max_seqs=_int(get, "HEARTH_MAX_SEQS", minimum=1),
            batch=_int(get, "HEARTH_BATCH", minimum=1),
            log_level=_choice(get, "HEARTH_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            llama_log=get("HEARTH_LLAMA_LOG") not in ("0", "false", "no"),
        )


def _int(get: _Getter, name: str, minimum: int) -> int:
    raw = get(name)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(get: _Getter, name: str, choices: tuple[str, ...]) -> str:
    value = get(name).upper()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def get_settings() -> Settings:
    """Settings from the process environment (read each call, so tests can monkeypatch)."""
    return Settings.from_env()
