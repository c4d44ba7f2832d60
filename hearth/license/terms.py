"""The license catalogue: one TOML file per license under ``catalogue/``, read into
:class:`LicenseTerms`.

Each file gives the license's version and source URL, and for each term the clause it comes
from (docs/LICENSES.md describes the format). The files are data: adding a license is adding a
file. Identifiers seen in the wild (GGUF ``general.license``, a model card's ``license``) are
matched against each file's ``aliases`` after :func:`normalise_id`.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from hearth.errors import ConfigError
from hearth.license.uses import check_uses

UNKNOWN = "unknown"
CATALOGUE_DIR = "catalogue"


class OutputTraining(StrEnum):
    """Whether a model's outputs may train other models."""

    YES = "yes"
    NO = "no"
    CONDITIONAL = "conditional"  # allowed, with conditions (named in the note)
    UNKNOWN = "unknown"


class Trigger(StrEnum):
    """When an attribution obligation applies."""

    DISTRIBUTE = "distribute"  # when the model or a derivative is shared with others
    PRODUCT = "product"  # also when a product or service built on it is offered to others


@dataclass(frozen=True)
class Permission:
    """A yes/no term: ``allowed`` None means the license does not say (unknown)."""

    allowed: bool | None
    clause: str
    note: str = ""


@dataclass(frozen=True)
class UserThreshold:
    monthly_active_users: int
    clause: str
    note: str = ""


@dataclass(frozen=True)
class Attribution:
    text: str
    where: str
    when: Trigger
    clause: str


@dataclass(frozen=True)
class DerivativeNaming:
    prefix: str
    rule: str
    clause: str


@dataclass(frozen=True)
class UseRestrictions:
    policy: str
    policy_url: str
    prohibited: tuple[str, ...]  # intended uses the license or its policy forbids
    review: tuple[str, ...]  # intended uses it restricts: a person must look at the details
    clause: str
    note: str = ""


@dataclass(frozen=True)
class Distribution:
    include_license: bool
    requirements: str
    clause: str
    notice: str | None = None  # text a "Notice" file must carry


@dataclass(frozen=True)
class Derivatives:
    inherit: bool
    clause: str
    note: str = ""


@dataclass(frozen=True)
class OutputUse:
    allowed: OutputTraining
    clause: str
    note: str = ""


@dataclass(frozen=True)
class LicenseTerms:
    id: str
    name: str
    version: str
    url: str
    kind: str
    summary: str
    aliases: tuple[str, ...]
    commercial_use: Permission
    production_use: Permission
    hosting: Permission  # offering the model to others as a hosted service
    user_threshold: UserThreshold | None
    attribution: Attribution | None
    derivative_naming: DerivativeNaming | None
    use_restrictions: UseRestrictions | None
    distribution: Distribution
    derivatives: Derivatives
    output_training: OutputUse
    reference_text: str | None = None  # package path of the full text, for fingerprints
    reference_fingerprint: str | None = None  # key in catalogue/fingerprints.json

    @property
    def is_unknown(self) -> bool:
        return self.id == UNKNOWN


class Catalogue:
    """Every license the catalogue knows, by id and by alias."""

    def __init__(self, terms: list[LicenseTerms]) -> None:
        self._by_id = {t.id: t for t in terms}
        self._by_alias: dict[str, LicenseTerms] = {}
        for entry in terms:
            for alias in (entry.id, *entry.aliases):
                self._by_alias[normalise_id(alias)] = entry

    def __iter__(self) -> Any:
        return iter(sorted(self._by_id.values(), key=lambda t: t.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, license_id: str) -> LicenseTerms:
        """The terms of ``license_id`` (a catalogue id); the unknown entry if there is none."""
        return self._by_id.get(license_id) or self._by_id[UNKNOWN]

    def resolve(self, identifier: str) -> LicenseTerms | None:
        """The license an identifier from the wild names (``Llama-3.1``, ``apache 2.0``)."""
        found = self._by_alias.get(normalise_id(identifier))
        return None if found is None or found.is_unknown else found

    def resolve_url(self, url: str) -> LicenseTerms | None:
        """The license whose source URL ``url`` is (scheme, ``www.`` and slashes ignored)."""
        wanted = _bare_url(url)
        if not wanted:
            return None
        return next((t for t in self if t.url and _bare_url(t.url) == wanted), None)


def normalise_id(identifier: str) -> str:
    """Lowercase, runs of spaces and underscores as one dash: ``Apache 2.0`` → ``apache-2.0``."""
    return re.sub(r"[\s_]+", "-", identifier.strip().lower())


def _bare_url(url: str) -> str:
    url = re.sub(r"^[a-z]+://", "", url.strip().lower())
    return url.removeprefix("www.").rstrip("/")


@functools.cache
def load_catalogue() -> Catalogue:
    """The catalogue shipped in the package (read once)."""
    folder = resources.files("hearth.license").joinpath(CATALOGUE_DIR)
    terms = [
        parse_terms(entry.read_text(encoding="utf-8"), entry.name)
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    ]
    return Catalogue(terms)


def read_reference_text(terms: LicenseTerms) -> str | None:
    if terms.reference_text is None:
        return None
    path = resources.files("hearth.license").joinpath(CATALOGUE_DIR, terms.reference_text)
    return path.read_text(encoding="utf-8")


def parse_terms(text: str, origin: str) -> LicenseTerms:
    """One catalogue file; ConfigError naming the file and the key when something is wrong."""
    try:
        data = tomllib.loads(text)
        return _terms(data)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"license catalogue {origin}: not valid TOML: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"license catalogue {origin}: {error}") from None


def _terms(data: Mapping[str, Any]) -> LicenseTerms:
    commercial = _permission(data.get("commercial_use", {}))
    return LicenseTerms(
        id=_text(data, "id"),
        name=_text(data, "name"),
        version=_text(data, "version"),
        url=str(data.get("url", "")),
        kind=_text(data, "kind"),
        summary=_text(data, "summary"),
        aliases=tuple(str(alias) for alias in data.get("aliases", [])),
        commercial_use=commercial,
        production_use=_permission(data["production_use"])
        if "production_use" in data
        else commercial,
        hosting=_permission(data.get("hosting", {"allowed": True, "clause": commercial.clause})),
        user_threshold=_optional(data, "user_threshold", _threshold),
        attribution=_optional(data, "attribution", _attribution),
        derivative_naming=_optional(data, "derivative_naming", _naming),
        use_restrictions=_optional(data, "use_restrictions", _restrictions),
        distribution=_distribution(data["distribution"]),
        derivatives=Derivatives(
            bool(data["derivatives"]["inherit"]),
            _text(data["derivatives"], "clause"),
            str(data["derivatives"].get("note", "")),
        ),
        output_training=OutputUse(
            OutputTraining(data["output_training"]["allowed"]),
            _text(data["output_training"], "clause"),
            str(data["output_training"].get("note", "")),
        ),
        reference_text=data.get("reference_text"),
        reference_fingerprint=data.get("reference_fingerprint"),
    )


def _optional(data: Mapping[str, Any], key: str, build: Any) -> Any:
    return build(data[key]) if key in data else None


def _permission(table: Mapping[str, Any]) -> Permission:
    allowed = table.get("allowed")
    if allowed is not None and not isinstance(allowed, bool):
        raise ValueError(f"allowed must be true or false, got {allowed!r}")
    return Permission(allowed, _text(table, "clause"), str(table.get("note", "")))


def _threshold(table: Mapping[str, Any]) -> UserThreshold:
    users = table["monthly_active_users"]
    if not isinstance(users, int) or users <= 0:
        raise ValueError(f"monthly_active_users must be a positive integer, got {users!r}")
    return UserThreshold(users, _text(table, "clause"), str(table.get("note", "")))


def _attribution(table: Mapping[str, Any]) -> Attribution:
    return Attribution(
        _text(table, "text"), _text(table, "where"), Trigger(table["when"]), _text(table, "clause")
    )


def _naming(table: Mapping[str, Any]) -> DerivativeNaming:
    return DerivativeNaming(_text(table, "prefix"), _text(table, "rule"), _text(table, "clause"))


def _restrictions(table: Mapping[str, Any]) -> UseRestrictions:
    prohibited = tuple(check_uses(table.get("prohibited", []), "prohibited"))
    review = tuple(check_uses(table.get("review", []), "review"))
    return UseRestrictions(
        _text(table, "policy"),
        str(table.get("policy_url", "")),
        prohibited,
        review,
        _text(table, "clause"),
        str(table.get("note", "")),
    )


def _distribution(table: Mapping[str, Any]) -> Distribution:
    return Distribution(
        bool(table["include_license"]),
        str(table.get("requirements", "")),
        _text(table, "clause"),
        table.get("notice"),
    )


def _text(table: Mapping[str, Any], key: str) -> str:
    value = table[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value
