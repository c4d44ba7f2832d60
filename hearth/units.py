"""Human-friendly quantities: durations ("5m", "1h30m"), byte sizes ("8G", "512M", "50%") and
moments ("30d" from now, "2026-12-31").

Pure functions used by :mod:`hearth.config` (environment variables) and by the engine (per-request
``keep_alive``). Invalid input raises :class:`ValidationError` naming the parameter; config turns
that into a :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from hearth.errors import ValidationError

FOREVER = math.inf  # a keep-alive that never expires

# Go's time.ParseDuration units, which Ollama's keep_alive accepts.
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)")

_DAYS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|w)", re.IGNORECASE)
_DAY_UNITS = {"d": 1.0, "w": 7.0}

# Binary multiples, as `free -h` and Ollama's memory figures use them.
_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(I?B)?", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%")


def parse_duration(value: str | float | int, param: str = "duration") -> float:
    """Seconds from a number (seconds) or a Go-style duration ("300ms", "5m", "1h30m", "-1m")."""
    if isinstance(value, bool):
        raise ValidationError(param, value, "must be a number of seconds or a duration like 5m")
    if isinstance(value, int | float):
        if math.isnan(value):
            raise ValidationError(param, value, "is not a number")
        return float(value)
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    parts = _DURATION_PART.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ValidationError(
            param, value, "must be seconds or a duration like 30s, 5m, 1h30m (-1 keeps forever)"
        )
    return sign * sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_keep_alive(value: str | float | int | None) -> float | None:
    """How long a model stays loaded once idle, as Ollama reads ``keep_alive``.

    ``None`` or "" means "not given" (use the default) and returns None. Otherwise seconds:
    a number or a duration ("5m", "1h"); 0 unloads as soon as the model is idle; any negative
    value keeps it loaded forever and returns :data:`FOREVER` (``math.inf``).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seconds = parse_duration(value, "keep_alive")
    return FOREVER if seconds < 0 else seconds


def parse_size(value: str, param: str = "size", *, total: int | None = None) -> int:
    """Bytes from "8G", "512M", "1.5GiB", "1048576", or (when ``total`` is given) "50%"."""
    text = value.strip()
    percent = _PERCENT.fullmatch(text)
    if percent is not None and total is not None:
        return int(total * float(percent.group(1)) / 100)
    match = _SIZE.fullmatch(text)
    if match is None:
        also = ", or a percentage of RAM like 50%" if total is not None else ""
        raise ValidationError(param, value, f"must be bytes or a size like 512M, 8G{also}")
    number, unit, _ = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.upper()])


def format_size(size: float) -> str:
    """A byte count for people: "1.9 GiB", "512.0 MiB", "300 B"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def parse_moment(value: str, param: str, *, now: datetime, past: bool = False) -> datetime:
    """A UTC moment from a span counted from ``now`` or from an ISO 8601 date or time.

    Spans: days or weeks ("30d", "2w") or a duration ("12h", "90m", "1h30m"); later than
    ``now``, or earlier with ``past=True``. Dates and times: "2026-12-31" (midnight UTC),
    "2026-12-31T18:00" (UTC), "2026-12-31T18:00+02:00".
    """
    text = value.strip()
    span = _span_seconds(text)
    if span is not None:
        if span < 0:
            raise ValidationError(param, value, "must be a positive span like 30d, or a date")
        return now + timedelta(seconds=-span if past else span)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            param, value, "must be a span like 30d, 2w, 12h or a date like 2026-12-31"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _span_seconds(text: str) -> float | None:
    days = _DAYS.fullmatch(text)
    if days is not None:
        return float(days.group(1)) * _DAY_UNITS[days.group(2).lower()] * 86400
    try:
        return parse_duration(text)
    except ValidationError:
        return None
