"""The limits a key or a team may have, and how people write them ("2M", "none")."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from hearth.errors import ValidationError

_COUNT = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)")
_COUNT_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
CLEAR = ("none", "off", "unlimited")


@dataclass(frozen=True)
class Limits:
    """Each limit is None when there is none. Token quotas count prompt and completion tokens;
    ``monthly_budget`` is money, in the currency of hearth.toml's [hardware] profile."""

    rpm: int | None = None  # requests per minute (sliding 60 s window)
    tpm: int | None = None  # tokens per minute (sliding 60 s window)
    daily_tokens: int | None = None  # calendar day, UTC
    monthly_tokens: int | None = None  # calendar month, UTC
    concurrent: int | None = None  # generations in flight at once
    monthly_budget: float | None = None  # money per calendar month, UTC

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def merged(self, changes: Limits, cleared: frozenset[str] = frozenset()) -> Limits:
        """These limits with ``changes``' set values applied and ``cleared`` ones removed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for f in fields(changes):
            value = getattr(changes, f.name)
            if value is not None:
                values[f.name] = value
        for name in cleared:
            values[name] = None
        return Limits(**values)

    def describe(self) -> str:
        """ "rpm 60, monthly tokens 2,000,000" (or "none")."""
        parts = [
            f"{_LABELS[f.name]} {_show(value)}"
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        ]
        return ", ".join(parts) or "none"


_LABELS = {
    "rpm": "rpm",
    "tpm": "tpm",
    "daily_tokens": "daily tokens",
    "monthly_tokens": "monthly tokens",
    "concurrent": "concurrent",
    "monthly_budget": "monthly budget",
}


def _show(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"


def parse_count(value: str, param: str) -> int:
    """A positive whole count from "60", "20000", "20k", "2M", "1.5G"."""
    match = _COUNT.fullmatch(value.strip())
    if match is None:
        raise ValidationError(param, value, "must be a count like 60, 20k or 2M")
    number, unit = match.groups()
    count = float(number) * _COUNT_UNITS[unit.lower()]
    if count < 1 or count != int(count):
        raise ValidationError(param, value, "must be a whole number of at least 1")
    return int(count)


def parse_money(value: str, param: str) -> float:
    try:
        amount = float(value.strip())
    except ValueError:
        raise ValidationError(param, value, "must be an amount of money like 50 or 12.5") from None
    if not amount > 0 or amount == float("inf"):
        raise ValidationError(param, value, "must be a positive amount")
    return amount


def checked(limits: Limits) -> Limits:
    """``limits`` if every set value is positive; ValidationError naming the first that is not."""
    for f in fields(limits):
        value = getattr(limits, f.name)
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise ValidationError(f.name, value, "must be positive (or absent for no limit)")
    return limits
