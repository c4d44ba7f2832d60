"""API keys: shown once, stored hashed, checked against the database on every request.

A secret is ``hth_`` followed by 32 random bytes in URL-safe base64 (47 characters in all). The
database keeps only its SHA-256 and a display prefix (``hth_`` + 8 characters: 48 of the 256
random bits), which is also the index :meth:`KeyStore.verify` looks candidates up by before it
compares hashes with :func:`hmac.compare_digest`. Nothing is cached, so a revoked key fails on
the very next request. Keys are never deleted: a revoked key keeps its name, and its usage
records keep pointing at it.

A key may be limited to some models (names as ``hearth list`` shows them; ``*`` globs such as
``gemma3:*`` allowed); ``None`` allows every model.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from sqlalchemy import JSON, Boolean, Engine, String, exists, false, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.db import Base, UTCDateTime, utcnow
from hearth.errors import (
    AuthenticationError,
    InvalidNameError,
    PermissionDeniedError,
    ValidationError,
)
from hearth.governance.limits import Limits
from hearth.governance.store import (
    LimitColumns,
    UpgradingSessions,
    limits_of,
    store_limits,
)
from hearth.store.names import parse_name

SECRET_PREFIX = "hth_"
SECRET_BYTES = 32
DISPLAY_CHARS = 8  # random characters after "hth_" kept in clear for display and lookup
SECRET_LENGTH = len(SECRET_PREFIX) + 43  # token_urlsafe(32) is 43 characters
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used is written at most once a minute a key
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

KeyStatus = Literal["active", "revoked", "expired"]
Clock = Callable[[], datetime]


class ApiKeyRow(LimitColumns, Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # SHA-256, hex
    models: Mapped[list[str] | None] = mapped_column(JSON)
    team: Mapped[str | None] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # May log in to the dashboard (/ui) and manage keys there.
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything but the secret and its hash."""

    name: str
    prefix: str
    models: tuple[str, ...] | None  # None: every model
    team: str | None
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    last_used: datetime | None
    admin: bool = False  # may log in to the dashboard
    limits: Limits = field(default_factory=Limits)  # its own limits (its team's apply too)

    def status(self, now: datetime) -> KeyStatus:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class CreatedKey:
    """A new key. ``secret`` exists only here: the database cannot give it back."""

    secret: str = field(repr=False)
    info: KeyInfo


class KeyStore:
    """API keys in the database behind ``engine`` (table ``api_keys``, created on first use)."""

    def __init__(self, engine: Engine, *, clock: Clock = utcnow) -> None:
        self._sessions = UpgradingSessions(engine, ApiKeyRow.__table__)  # type: ignore[arg-type]
        self._clock = clock

    def create(
        self,
        name: str,
        *,
        models: Sequence[str] | None,
        expires: datetime | None,
        team: str | None = None,
        admin: bool = False,
        limits: Limits | None = None,
    ) -> CreatedKey:
        now = self._clock()
        row = ApiKeyRow(
            name=_checked_name("name", name),
            models=_checked_models(models),
            team=None if team is None else _checked_name("team", team),
            created=now,
            expires=_checked_expiry(expires, now),
            admin=admin,
        )
        store_limits(row, limits or Limits())
        secret = new_secret()
        row.prefix, row.secret_hash = display_prefix(secret), hash_secret(secret)
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            reason = "an API key with this name exists (revoked keys keep their names)"
            raise ValidationError("name", name, reason) from None
        return CreatedKey(secret=secret, info=_info(row))

    def list(self) -> builtins.list[KeyInfo]:
        """Every key, revoked and expired ones included, oldest first."""
        with self._sessions.begin() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))
            return [_info(row) for row in rows]

    def revoke(self, name_or_prefix: str) -> KeyInfo:
        """Revoke a key by name or display prefix; revoking a revoked key changes nothing."""
        with self._sessions.begin() as session:
            row = _find(session, name_or_prefix)
            if row.revoked is None:
                row.revoked = self._clock()
            return _info(row)

    def set_limits(
        self, name_or_prefix: str, changes: Limits, cleared: frozenset[str] = frozenset()
    ) -> KeyInfo:
        """Change some of a key's limits (``cleared`` names limits to remove)."""
        with self._sessions.begin() as session:
            row = _find(session, name_or_prefix)
            store_limits(row, limits_of(row).merged(changes, cleared))
            return _info(row)

    def any_active(self) -> bool:
        """Whether any key is neither revoked nor expired (the server may then require keys)."""
        now = self._clock()
        usable = exists().where(
            ApiKeyRow.revoked.is_(None),
            or_(ApiKeyRow.expires.is_(None), ApiKeyRow.expires > now),
        )
        with self._sessions.begin() as session:
            return bool(session.scalar(select(usable)))

    def any_created(self) -> bool:
        """Whether any key was ever created. The server requires keys from then on: revoking
        or expiring the last key must not silently open it to everyone."""
        with self._sessions.begin() as session:
            return bool(session.scalar(select(exists().where(ApiKeyRow.id.is_not(None)))))

    def verify(self, secret: str | None) -> KeyInfo:
        """The key this secret belongs to, if it is active; else AuthenticationError (401)."""
        if not secret:
            raise AuthenticationError("missing API key: send it as 'Authorization: Bearer hth_...'")
        now = self._clock()
        with self._sessions.begin() as session:
            row = _match(session, secret)
            info = _info(row)
            _check_usable(info, now)
            if info.last_used is None or now - info.last_used >= LAST_USED_RESOLUTION:
                row.last_used = now
                info = replace(info, last_used=now)
        return info

    def check_model(self, key: KeyInfo, model: str) -> None:
        """PermissionDeniedError (403) unless ``key`` may use ``model``."""
        if not model_allowed(key.models, model):
            allowed = ", ".join(key.models or ())
            raise PermissionDeniedError(
                f"API key {key.name!r} may not use model {model!r} (allowed: {allowed})"
            )


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def display_prefix(secret: str) -> str:
    return secret[: len(SECRET_PREFIX) + DISPLAY_CHARS]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def model_allowed(allowed: Sequence[str] | None, model: str) -> bool:
    """Whether ``model`` is in ``allowed`` (None allows all); names compare in canonical form,
    so ``tiny`` matches ``tiny:latest``; entries with ``*`` are globs."""
    if allowed is None:
        return True
    forms = {model, _canonical(model)}
    for entry in allowed:
        if "*" in entry:
            if any(fnmatchcase(form, entry) for form in forms | {_display(model)}):
                return True
        elif _canonical(entry) in forms:
            return True
    return False


def _canonical(model: str) -> str:
    try:
        return parse_name(model).full
    except InvalidNameError:
        return model


def _display(model: str) -> str:
    try:
        return str(parse_name(model))
    except InvalidNameError:
        return model


def _match(session: Session, secret: str) -> ApiKeyRow:
    """The row whose hash matches, comparing every candidate in constant time."""
    unknown = AuthenticationError("unknown API key (create one with `hearth keys create`)")
    if not secret.startswith(SECRET_PREFIX) or len(secret) != SECRET_LENGTH:
        raise unknown
    digest = hash_secret(secret)
    query = select(ApiKeyRow).where(ApiKeyRow.prefix == display_prefix(secret))
    found = None
    for row in session.scalars(query):
        if hmac.compare_digest(row.secret_hash, digest):
            found = row
    if found is None:
        raise unknown
    return found


def _check_usable(info: KeyInfo, now: datetime) -> None:
    status = info.status(now)
    if status == "revoked":
        raise AuthenticationError(f"API key {info.name!r} has been revoked")
    if status == "expired" and info.expires is not None:
        raise AuthenticationError(
            f"API key {info.name!r} expired at {info.expires.isoformat(timespec='seconds')}"
        )


def _find(session: Session, name_or_prefix: str) -> ApiKeyRow:
    by_name = session.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name_or_prefix))
    if by_name is not None:
        return by_name
    by_prefix = session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == name_or_prefix)).all()
    if len(by_prefix) == 1:
        return by_prefix[0]
    reason = "matches several keys; use the name" if by_prefix else "no API key has this name"
    raise ValidationError("name", name_or_prefix, reason)


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        name=row.name,
        prefix=row.prefix,
        models=None if row.models is None else tuple(row.models),
        team=row.team,
        created=row.created,
        expires=row.expires,
        revoked=row.revoked,
        last_used=row.last_used,
        admin=bool(row.admin),
        limits=limits_of(row),
    )


def _checked_name(param: str, value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        reason = "must be 1-64 letters, digits or . _ @ - (starting with a letter or digit)"
        raise ValidationError(param, value, reason)
    return value


def _checked_models(models: Sequence[str] | None) -> list[str] | None:
    if models is None:
        return None
    cleaned = [model.strip() for model in models]
    if not cleaned or not all(cleaned):
        raise ValidationError("models", models, "must name at least one model (None allows all)")
    return cleaned


def _checked_expiry(expires: datetime | None, now: datetime) -> datetime | None:
    if expires is None:
        return None
    aware = expires if expires.tzinfo is not None else expires.replace(tzinfo=now.tzinfo)
    if aware <= now:
        raise ValidationError("expires", expires.isoformat(), "must be in the future")
    return aware
