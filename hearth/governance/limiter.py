"""The limiter: pure logic, one per server process, with a clock the tests replace.

Windows: requests and tokens per minute are sliding 60-second windows; daily and monthly
quotas and budgets are calendar days and months in UTC. A generation *reserves* its worst case
(``n * (prompt + max_tokens)`` tokens, and their cost) before it reaches the engine, and
*settles* to what it really used when it ends, so requests racing for the last tokens of a
quota never overshoot it: the reservation is taken under one lock. When a day, month or budget
quota has room for the prompt but not for ``max_tokens``, the request's ``max_tokens`` is cut
to the room left (the answer ends with finish reason "length"); a minute window instead refuses
with the seconds until enough of it expires. Counts live in memory; the server loads each
subject's day and month totals from the usage records once, when it first sees the subject.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from hearth.errors import QuotaExceededError
from hearth.governance.limits import Limits

Clock = Callable[[], float]  # seconds since the epoch
MINUTE = 60.0


@dataclass(frozen=True)
class Subject:
    """Who a limit belongs to: an API key or a team."""

    kind: Literal["key", "team"]
    name: str
    limits: Limits

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def label(self) -> str:
        return f"{'API key' if self.kind == 'key' else 'team'} {self.name!r}"


@dataclass(frozen=True)
class Baseline:
    """What the usage records say a subject used this day and month before this process."""

    day_tokens: int = 0
    month_tokens: int = 0
    month_cost: float = 0.0


@dataclass
class _State:
    day: str
    month: str
    requests: deque[float] = field(default_factory=deque)  # admission times, last minute
    minute: deque[tuple[float, int]] = field(default_factory=deque)  # settled tokens, last minute
    day_tokens: int = 0
    month_tokens: int = 0
    month_cost: float = 0.0
    reserved_tokens: int = 0
    reserved_cost: float = 0.0
    in_flight: int = 0


@dataclass
class Reservation:
    """A generation's hold on its subjects' quotas, until it is settled or released."""

    subjects: tuple[Subject, ...]
    tokens: int
    cost: float
    rate: float  # money per token of this model (0: unknown)
    max_tokens: int  # max_tokens per completion, cut to the room left if needed
    open: bool = True


@dataclass(frozen=True)
class _Room:
    tokens: float  # math.inf: unlimited
    limit: str
    subject: Subject
    minute: bool


class Limiter:
    """Admission, reservation and settlement for any number of subjects. Thread-safe."""

    blocking = False  # True where calls wait on a database (governance.shared): call off the loop

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def knows(self, subject: Subject) -> bool:
        """Whether the subject's baseline is loaded (else call :meth:`load` first)."""
        with self._lock:
            return subject.id in self._states

    def load(self, subject: Subject, baseline: Baseline) -> None:
        """Start counting ``subject`` from ``baseline`` (ignored if it is counted already)."""
        now = self._clock()
        with self._lock:
            if subject.id not in self._states:
                day, month = _periods(now)
                self._states[subject.id] = _State(
                    day=day,
                    month=month,
                    day_tokens=baseline.day_tokens,
                    month_tokens=baseline.month_tokens,
                    month_cost=baseline.month_cost,
                )

    def admit(self, subjects: Sequence[Subject], rate: float = 0.0) -> None:
        """Count one request against requests-per-minute; refuse it (QuotaExceededError) if a
        limit is at its end already: rpm, concurrent generations, or a quota with no room."""
        now = self._clock()
        with self._lock:
            for subject in subjects:
                self._check_admission(subject, self._state(subject, now), now, rate)
            for subject in subjects:
                if subject.limits.rpm is not None:
                    self._states[subject.id].requests.append(now)

    def reserve(
        self,
        subjects: Sequence[Subject],
        *,
        prompt: int,
        max_tokens: int,
        n: int = 1,
        rate: float = 0.0,
    ) -> Reservation:
        """Hold ``n * (prompt + max_tokens)`` tokens (cutting ``max_tokens`` to the room left
        in day/month quotas and budgets) and one concurrent slot in every subject."""
        now = self._clock()
        with self._lock:
            states = [self._state(s, now) for s in subjects]
            for subject, state in zip(subjects, states, strict=True):
                _check_concurrency(subject, state)
            granted = self._grant(subjects, states, now, prompt, max_tokens, n, rate)
            tokens = n * (prompt + granted)
            for state in states:
                state.reserved_tokens += tokens
                state.reserved_cost += tokens * rate
                state.in_flight += 1
            return Reservation(tuple(subjects), tokens, tokens * rate, rate, granted)

    def settle(self, reservation: Reservation, used_tokens: int, cost: float | None = None) -> None:
        """Replace the reservation by what the generation really used (streams cut short
        included; ``cost`` defaults to the tokens at the reservation's rate), and free its
        concurrent slot."""
        if cost is None:
            cost = used_tokens * reservation.rate
        now = self._clock()
        with self._lock:
            if not reservation.open:
                return
            reservation.open = False
            for subject in reservation.subjects:
                state = self._state(subject, now)
                self._unreserve(state, reservation)
                self._count(state, now, used_tokens, cost)

    def charge(self, subjects: Sequence[Subject], tokens: int, cost: float) -> None:
        """Count tokens used outside any open reservation (reported after it was settled)."""
        now = self._clock()
        with self._lock:
            for subject in subjects:
                self._count(self._state(subject, now), now, tokens, cost)

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back unused (the generation never ran)."""
        with self._lock:
            if not reservation.open:
                return
            reservation.open = False
            for subject in reservation.subjects:
                state = self._states.get(subject.id)
                if state is not None:
                    self._unreserve(state, reservation)

    def used(self, subject: Subject) -> dict[str, float]:
        """Current counts for dashboards: tokens this minute, day and month, cost this month,
        requests this minute, generations in flight, tokens reserved."""
        now = self._clock()
        with self._lock:
            state = self._states.get(subject.id)
            if state is None:
                return {}
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

    def _state(self, subject: Subject, now: float) -> _State:
        state = self._states.get(subject.id)
        if state is None:  # not loaded: count from zero rather than fail
            day, month = _periods(now)
            state = self._states[subject.id] = _State(day=day, month=month)
        self._roll(state, now)
        return state

    @staticmethod
    def _roll(state: _State, now: float) -> None:
        while state.requests and state.requests[0] <= now - MINUTE:
            state.requests.popleft()
        while state.minute and state.minute[0][0] <= now - MINUTE:
            state.minute.popleft()
        day, month = _periods(now)
        if day != state.day:
            state.day, state.day_tokens = day, 0
        if month != state.month:
            state.month, state.month_tokens, state.month_cost = month, 0, 0.0

    @staticmethod
    def _count(state: _State, now: float, tokens: int, cost: float) -> None:
        state.minute.append((now, tokens))
        state.day_tokens += tokens
        state.month_tokens += tokens
        state.month_cost += cost

    @staticmethod
    def _unreserve(state: _State, reservation: Reservation) -> None:
        state.reserved_tokens -= reservation.tokens
        state.reserved_cost -= reservation.cost
        state.in_flight -= 1

    def _check_admission(self, subject: Subject, state: _State, now: float, rate: float) -> None:
        limits = subject.limits
        if limits.rpm is not None and len(state.requests) >= limits.rpm:
            retry = state.requests[0] + MINUTE - now
            message = f"{subject.label} is over its limit of {limits.rpm:,} requests per minute"
            raise _exceeded(message, "rpm", retry)
        _check_concurrency(subject, state)
        for room in _rooms(subject, state, rate):
            if room.tokens <= 0 and room.minute:
                message = f"{subject.label} is over its limit of {limits.tpm:,} tokens per minute"
                raise _exceeded(message, "tpm", _minute_retry(state, now, 1 - room.tokens))
            if room.tokens <= 0:
                raise _exhausted(room, now)

    def _grant(
        self,
        subjects: Sequence[Subject],
        states: Sequence[_State],
        now: float,
        prompt: int,
        max_tokens: int,
        n: int,
        rate: float,
    ) -> int:
        """``max_tokens``, or less where a day/month quota or a budget has less room left."""
        need = n * (prompt + max_tokens)
        granted = max_tokens
        for subject, state in zip(subjects, states, strict=True):
            for room in _rooms(subject, state, rate):
                if room.tokens >= need:
                    continue
                if room.minute and room.tokens < _minute_limit(subject):
                    raise _exceeded(
                        f"{subject.label} is over its limit of {_minute_limit(subject):,}"
                        f" tokens per minute (this request may use {need:,})",
                        "tpm",
                        _minute_retry(state, now, need - room.tokens),
                    )
                fits = math.floor(room.tokens) // n - prompt
                if fits < 1:
                    raise _exhausted(room, now)
                granted = min(granted, fits)
        return granted


def _check_concurrency(subject: Subject, state: _State) -> None:
    limit = subject.limits.concurrent
    if limit is not None and state.in_flight >= limit:
        message = f"{subject.label} is over its limit of {limit:,} concurrent generations"
        raise _exceeded(message, "concurrent", 1)


def _rooms(subject: Subject, state: _State, rate: float) -> list[_Room]:
    """Tokens each of the subject's token limits has left (reservations count as used)."""
    limits, reserved = subject.limits, state.reserved_tokens
    rooms = []
    if limits.tpm is not None:
        used = sum(t for _, t in state.minute) + reserved
        rooms.append(_Room(limits.tpm - used, "tpm", subject, True))
    if limits.daily_tokens is not None:
        used = state.day_tokens + reserved
        rooms.append(_Room(limits.daily_tokens - used, "daily_tokens", subject, False))
    if limits.monthly_tokens is not None:
        used = state.month_tokens + reserved
        rooms.append(_Room(limits.monthly_tokens - used, "monthly_tokens", subject, False))
    if limits.monthly_budget is not None:
        left = limits.monthly_budget - state.month_cost - state.reserved_cost
        tokens = left / rate if rate > 0 else (math.inf if left > 0 else 0.0)
        rooms.append(_Room(tokens, "monthly_budget", subject, False))
    return rooms


def _minute_limit(subject: Subject) -> int:
    return subject.limits.tpm or 0


def _minute_retry(state: _State, now: float, short: float) -> float:
    """Seconds until ``short`` more tokens have left the sliding minute."""
    freed = 0
    for when, tokens in state.minute:
        freed += tokens
        if freed >= short:
            return when + MINUTE - now
    return MINUTE if not state.minute else state.minute[-1][0] + MINUTE - now


def _exhausted(room: _Room, now: float) -> QuotaExceededError:
    subject, limits = room.subject, room.subject.limits
    reset = _next_day(now) if room.limit == "daily_tokens" else _next_month(now)
    when = datetime.fromtimestamp(reset, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if room.limit == "monthly_budget":
        message = f"{subject.label} has spent its monthly budget of {limits.monthly_budget:,.2f}"
    else:
        period = "daily" if room.limit == "daily_tokens" else "monthly"
        quota = limits.daily_tokens if period == "daily" else limits.monthly_tokens
        message = f"{subject.label} has used its {period} quota of {quota:,} tokens"
    return _exceeded(f"{message} (resets {when})", room.limit, reset - now)


def _exceeded(message: str, limit: str, retry_after: float) -> QuotaExceededError:
    return QuotaExceededError(message, limit=limit, retry_after=math.ceil(retry_after))


def _periods(now: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


def _next_day(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight + timedelta(days=1)).timestamp()


def _next_month(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1).timestamp()


def period_starts(now: datetime) -> tuple[datetime, datetime]:
    """The start of ``now``'s UTC day and month (for loading baselines)."""
    moment = now.astimezone(UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)
