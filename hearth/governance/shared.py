"""Quota counters that every server process on one database shares (``HEARTH_SHARED_QUOTAS=1``,
or a cluster's replicas).

:class:`SharedLimiter` is a :class:`~hearth.governance.limiter.Limiter` whose counts live in the
database (``HEARTH_DATABASE_URL``) instead of one process's memory. Each call is one
transaction that locks the rows of its subjects (a key, its team), loads them into the same
``_State`` the in-memory limiter keeps, makes the same decision with the same code, and writes
back what changed. Racing reservations therefore serialize per subject across processes, and
no quota is overshot at all (a reservation holds the worst case until it settles).

Tables (created on first use):

- ``quota_usage``: one row per subject: this UTC day's and month's settled tokens and cost.
  It is also the lock: ``SELECT ... FOR UPDATE`` on PostgreSQL (rows taken in subject order,
  so two transactions never deadlock), ``BEGIN IMMEDIATE`` on SQLite (one writer at a time).
- ``quota_minute``: requests admitted and tokens settled per subject and whole second, for the
  sliding minute (rpm, tpm). A second's counts are dated at its end, so they leave the window
  up to one second late, never early. Written only for subjects with an rpm or tpm limit.
- ``quota_leases``: one row per open reservation and subject, with an expiry. A live process
  renews its leases every ``lease_ttl / 3`` seconds; a crashed one's leases expire after
  ``lease_ttl`` and stop counting as reserved tokens and concurrent generations.

Clocks: each process counts with its own clock, so machines sharing a database need NTP;
skew shifts the minute windows by the skew. If the database fails while a generation settles,
the error is logged and its tokens are missing from the counters (the usage record still has
them); admission and reservation fail with DatabaseError (HTTP 503) instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import BigInteger, Engine, Float, Integer, String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.db import Base, Sessions
from hearth.errors import HearthError
from hearth.governance.limiter import (
    MINUTE,
    Baseline,
    Clock,
    Limiter,
    Reservation,
    Subject,
    _check_concurrency,
    _periods,
    _State,
)

log = logging.getLogger(__name__)

LEASE_TTL = 60.0  # seconds a reservation outlives its process's last renewal
_RENEW_CHUNK = 500  # lease ids per UPDATE


class QuotaUsageRow(Base):
    __tablename__ = "quota_usage"

    subject: Mapped[str] = mapped_column(String(80), primary_key=True)  # "key:name", "team:name"
    day: Mapped[str] = mapped_column(String(10))  # 2026-11-25 (UTC)
    month: Mapped[str] = mapped_column(String(7))  # 2026-11
    day_tokens: Mapped[int] = mapped_column(BigInteger)
    month_tokens: Mapped[int] = mapped_column(BigInteger)
    month_cost: Mapped[float] = mapped_column(Float)


class QuotaMinuteRow(Base):
    __tablename__ = "quota_minute"

    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    second: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # whole epoch seconds
    requests: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(BigInteger)


class QuotaLeaseRow(Base):
    __tablename__ = "quota_leases"

    lease: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[float] = mapped_column(Float)
    expires: Mapped[float] = mapped_column(Float)  # epoch seconds


TABLES = (QuotaUsageRow.__table__, QuotaMinuteRow.__table__, QuotaLeaseRow.__table__)


@dataclass
class SharedReservation(Reservation):
    lease: str = ""  # the id of its rows in quota_leases


class SharedLimiter(Limiter):
    """The :class:`Limiter` interface over counters in the database. Thread-safe, and safe
    across processes sharing the database."""

    blocking = True

    def __init__(
        self, engine: Engine, clock: Clock = time.time, lease_ttl: float = LEASE_TTL
    ) -> None:
        super().__init__(clock)
        self._sessions = Sessions(engine, *TABLES)  # type: ignore[arg-type]
        self._lease_ttl = lease_ttl
        self._known: set[str] = set()
        self._open: dict[str, SharedReservation] = {}  # leases this process renews
        self._renewer: threading.Thread | None = None

    def knows(self, subject: Subject) -> bool:
        if subject.id in self._known:
            return True
        with self._sessions.begin() as session:
            found = session.get(QuotaUsageRow, subject.id) is not None
        if found:
            self._known.add(subject.id)
        return found

    def load(self, subject: Subject, baseline: Baseline) -> None:
        day, month = _periods(self._clock())
        with self._sessions.begin() as session:
            _insert_missing(session, subject.id, day, month, baseline)
        self._known.add(subject.id)

    def admit(self, subjects: Sequence[Subject], rate: float = 0.0) -> None:
        now = self._clock()
        with self._locked(subjects, now) as (session, states):
            for subject in subjects:
                self._check_admission(subject, states[subject.id], now, rate)
            for subject in subjects:
                if subject.limits.rpm is not None:
                    _add_to_minute(session, subject.id, now, requests=1, tokens=0)

    def reserve(
        self,
        subjects: Sequence[Subject],
        *,
        prompt: int,
        max_tokens: int,
        n: int = 1,
        rate: float = 0.0,
    ) -> Reservation:
        now = self._clock()
        lease = uuid.uuid4().hex
        with self._locked(subjects, now) as (session, states):
            ordered = [states[s.id] for s in subjects]
            for subject, state in zip(subjects, ordered, strict=True):
                _check_concurrency(subject, state)
            granted = self._grant(subjects, ordered, now, prompt, max_tokens, n, rate)
            tokens = n * (prompt + granted)
            expires = now + self._lease_ttl
            session.add_all(
                QuotaLeaseRow(
                    lease=lease, subject=s.id, tokens=tokens, cost=tokens * rate, expires=expires
                )
                for s in {s.id: s for s in subjects}.values()
            )
        reservation = SharedReservation(
            tuple(subjects), tokens, tokens * rate, rate, granted, lease=lease
        )
        self._hold(reservation)
        return reservation

    def settle(self, reservation: Reservation, used_tokens: int, cost: float | None = None) -> None:
        if cost is None:
            cost = used_tokens * reservation.rate
        if not self._close(reservation):
            return
        self._counted(reservation.subjects, used_tokens, cost, reservation)

    def charge(self, subjects: Sequence[Subject], tokens: int, cost: float) -> None:
        self._counted(subjects, tokens, cost, None)

    def release(self, reservation: Reservation) -> None:
        if not self._close(reservation):
            return
        try:
            with self._sessions.begin() as session:
                _drop_lease(session, reservation)
        except HearthError as error:
            log.warning("could not release a quota reservation (it expires by itself): %s", error)

    def used(self, subject: Subject) -> dict[str, float]:
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get(QuotaUsageRow, subject.id)
            if row is None:
                return {}
            state = _load_states(session, [row], now, prune=False, minute={row.subject})[
                row.subject
            ]
        self._roll(state, now)
        return {
            "requests_minute": len(state.requests),
            "tokens_minute": sum(t for _, t in state.minute),
            "tokens_day": state.day_tokens,
            "tokens_month": state.month_tokens,
            "cost_month": state.month_cost,
            "in_flight": state.in_flight,
            "reserved_tokens": state.reserved_tokens,
        }

    def renew(self) -> None:
        """Push back the expiry of every lease this process holds open."""
        with self._lock:
            leases = list(self._open)
        if not leases:
            return
        expires = self._clock() + self._lease_ttl
        with self._sessions.begin() as session:
            for start in range(0, len(leases), _RENEW_CHUNK):
                chunk = leases[start : start + _RENEW_CHUNK]
                session.execute(
                    update(QuotaLeaseRow)
                    .where(QuotaLeaseRow.lease.in_(chunk))
                    .values(expires=expires)
                )

    def open_leases(self) -> int:
        with self._lock:
            return len(self._open)

    @contextmanager
    def _locked(
        self, subjects: Sequence[Subject], now: float
    ) -> Iterator[tuple[Session, dict[str, _State]]]:
        """One transaction holding the subjects' rows, with their state as of ``now``; the
        settled counts are written back when the block ends without an exception."""
        ids = sorted({s.id for s in subjects})
        day, month = _periods(now)
        with self._sessions.begin() as session:
            _write_lock(session)
            for subject_id in ids:
                if subject_id not in self._known:  # rows are never deleted
                    _insert_missing(session, subject_id, day, month, Baseline())
            rows = session.scalars(
                select(QuotaUsageRow)
                .where(QuotaUsageRow.subject.in_(ids))
                .order_by(QuotaUsageRow.subject)
                .with_for_update()
            ).all()
            minute = {s.id for s in subjects if s.limits.rpm or s.limits.tpm}
            states = _load_states(session, rows, now, prune=True, minute=minute)
            for state in states.values():
                self._roll(state, now)
            yield session, states
            for row in rows:
                _store(row, states[row.subject])
        self._known.update(ids)

    def _counted(
        self,
        subjects: Sequence[Subject],
        tokens: int,
        cost: float,
        reservation: Reservation | None,
    ) -> None:
        """Count used tokens (and drop the reservation's lease) in one transaction; a database
        failure is logged, not raised: the generation is over and its answer sent."""
        now = self._clock()
        try:
            with self._locked(subjects, now) as (session, states):
                if reservation is not None:
                    _drop_lease(session, reservation)
                for subject in {s.id: s for s in subjects}.values():
                    self._count(states[subject.id], now, tokens, cost)
                    if subject.limits.tpm is not None:
                        _add_to_minute(session, subject.id, now, requests=0, tokens=tokens)
        except HearthError as error:
            log.warning("could not count %d used tokens against the quotas: %s", tokens, error)

    def _hold(self, reservation: SharedReservation) -> None:
        with self._lock:
            self._open[reservation.lease] = reservation
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_while_open, name="hearth-quota-leases", daemon=True
                )
                self._renewer.start()

    def _close(self, reservation: Reservation) -> bool:
        """Mark ``reservation`` closed; False when it was closed already (by another thread)."""
        with self._lock:
            if not reservation.open:
                return False
            reservation.open = False
            if isinstance(reservation, SharedReservation):
                self._open.pop(reservation.lease, None)
            return True

    def _renew_while_open(self) -> None:
        """The renewing thread: runs while this process holds leases, then ends."""
        while True:
            time.sleep(self._lease_ttl / 3)
            with self._lock:
                if not self._open:
                    self._renewer = None
                    return
            try:
                self.renew()
            except HearthError as error:
                log.warning("could not renew quota leases: %s", error)


def _write_lock(session: Session) -> None:
    """SQLite: take the write lock now, not at the first write (a reader that later writes
    would fail at once with "database is locked" when another writer went first)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _insert_missing(
    session: Session, subject_id: str, day: str, month: str, base: Baseline
) -> None:
    values = {
        "subject": subject_id,
        "day": day,
        "month": month,
        "day_tokens": base.day_tokens,
        "month_tokens": base.month_tokens,
        "month_cost": base.month_cost,
    }
    insert = _dialect_insert(session)(QuotaUsageRow).values(values)
    session.execute(insert.on_conflict_do_nothing(index_elements=["subject"]))


def _add_to_minute(
    session: Session, subject_id: str, now: float, requests: int, tokens: int
) -> None:
    values = {
        "subject": subject_id,
        "second": math.floor(now),
        "requests": requests,
        "tokens": tokens,
    }
    insert = _dialect_insert(session)(QuotaMinuteRow).values(values)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["subject", "second"],
            set_={
                "requests": QuotaMinuteRow.requests + insert.excluded.requests,
                "tokens": QuotaMinuteRow.tokens + insert.excluded.tokens,
            },
        )
    )


def _dialect_insert(session: Session):  # type: ignore[no-untyped-def]
    """The INSERT construct with ON CONFLICT for this database (PostgreSQL or SQLite)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _load_states(
    session: Session,
    rows: Sequence[QuotaUsageRow],
    now: float,
    *,
    prune: bool,
    minute: set[str],
) -> dict[str, _State]:
    """The in-memory limiter's state for each row's subject: its counts, its live leases, and
    (for the subjects in ``minute``: those with rpm or tpm) the minute's seconds. Two queries
    in all. With ``prune`` (under the row locks), expired rows are deleted."""
    states = {
        row.subject: _State(
            day=row.day,
            month=row.month,
            day_tokens=row.day_tokens,
            month_tokens=row.month_tokens,
            month_cost=row.month_cost,
        )
        for row in rows
    }
    stale = _load_minutes(session, states, now, minute)
    expired = _load_leases(session, states, now)
    if prune and stale:
        cutoff = math.floor(now - MINUTE) - 1
        session.execute(
            delete(QuotaMinuteRow).where(
                QuotaMinuteRow.subject.in_(stale), QuotaMinuteRow.second <= cutoff
            )
        )
    if prune and expired:
        session.execute(
            delete(QuotaLeaseRow).where(
                QuotaLeaseRow.subject.in_(expired), QuotaLeaseRow.expires <= now
            )
        )
    return states


def _load_minutes(
    session: Session, states: dict[str, _State], now: float, subjects: set[str]
) -> list[str]:
    """Fill each state's minute window; return the subjects that have seconds outside it."""
    if not subjects:
        return []
    stale = set()
    seconds = session.execute(
        select(
            QuotaMinuteRow.subject,
            QuotaMinuteRow.second,
            QuotaMinuteRow.requests,
            QuotaMinuteRow.tokens,
        )
        .where(QuotaMinuteRow.subject.in_(sorted(subjects)))
        .order_by(QuotaMinuteRow.subject, QuotaMinuteRow.second)
    ).all()
    for subject, second, requests, tokens in seconds:
        end = float(second + 1)  # dated at the second's end: leaves the window late, not early
        if end <= now - MINUTE:
            stale.add(subject)
            continue
        states[subject].requests.extend([end] * requests)
        if tokens:
            states[subject].minute.append((end, tokens))
    return sorted(stale)


def _load_leases(session: Session, states: dict[str, _State], now: float) -> list[str]:
    """Count each state's live leases; return the subjects that have expired ones."""
    expired = set()
    leases = session.execute(
        select(
            QuotaLeaseRow.subject, QuotaLeaseRow.tokens, QuotaLeaseRow.cost, QuotaLeaseRow.expires
        ).where(QuotaLeaseRow.subject.in_(sorted(states)))
    ).all()
    for subject, tokens, cost, expires in leases:
        if expires <= now:
            expired.add(subject)
            continue
        state = states[subject]
        state.reserved_tokens += tokens
        state.reserved_cost += cost
        state.in_flight += 1
    return sorted(expired)


def _store(row: QuotaUsageRow, state: _State) -> None:
    """Write the settled counts back (the ORM updates only the columns that changed)."""
    row.day, row.month = state.day, state.month
    row.day_tokens, row.month_tokens = state.day_tokens, state.month_tokens
    row.month_cost = state.month_cost


def _drop_lease(session: Session, reservation: Reservation) -> None:
    if isinstance(reservation, SharedReservation):
        session.execute(delete(QuotaLeaseRow).where(QuotaLeaseRow.lease == reservation.lease))
