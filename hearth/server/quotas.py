"""Rate limits, token quotas and budgets on the server's request path.

Three points on the path, each one line in the shared code:

1. :func:`admit` (from ``auth.authenticate``, every authenticated request): counts the request
   against requests-per-minute and refuses it with 429 if a limit of its key or team is at its
   end already (rpm, concurrent generations, a quota or budget with no room), before any model
   is loaded. It leaves a :class:`Ticket` for the rest of the request.
2. :func:`metered` (from ``deps.lease_and_start``): the model view a route starts its
   generation on reserves ``n * (prompt + max_tokens)`` tokens (and their cost) first, cutting
   ``max_tokens`` to the room left in a day/month quota or budget, so nothing reaches the engine
   that could take a quota past its limit. The reservation ends with the request's lease.
3. :func:`note_usage` (from ``deps.observe``, as each usage record is made): the tokens a
   generation really used, streams cut short included; the reservation settles to them.

Counts are per process, in memory (:class:`hearth.governance.limiter.Limiter`), started from
the usage records the first time a key or team is seen: several server processes on one
database then each enforce the limits on their own traffic. With ``HEARTH_SHARED_QUOTAS=1``
(:func:`limiter_for`) the counts live in the database instead
(:class:`hearth.governance.shared.SharedLimiter`), and all the processes enforce them together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from contextlib import AsyncExitStack
from contextvars import ContextVar
from dataclasses import replace
from datetime import timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import Engine

from hearth.config import Hardware, Settings
from hearth.db import utcnow
from hearth.engine.engine import Generation
from hearth.engine.llm import ModelView
from hearth.engine.sampling import SamplingParams
from hearth.governance.cost import model_rates, read_uses, spent
from hearth.governance.limiter import Baseline, Limiter, Reservation, Subject, period_starts
from hearth.governance.shared import SharedLimiter
from hearth.governance.store import TeamStore
from hearth.server.keys import KeyInfo, KeyStore
from hearth.server.usage import UsageLog

log = logging.getLogger(__name__)

RATES_TTL = 600.0  # seconds between re-measuring each model's cost per token
RATES_WINDOW = timedelta(days=30)  # usage records the rates are measured on

_ticket: ContextVar[Ticket | None] = ContextVar("hearth_quota_ticket", default=None)


def limiter_for(settings: Settings, engine: Engine) -> Limiter:
    """Counters in the database when quotas are shared (HEARTH_SHARED_QUOTAS), else in memory."""
    return SharedLimiter(engine) if settings.shared_quotas else Limiter()


class Quotas:
    """The server's limiter and where its limits and baselines come from (app.state.quotas)."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyStore,
        usage: UsageLog,
        hardware: Hardware | None,
        limiter: Limiter | None = None,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._teams = TeamStore(engine)
        self._usage = usage
        self._hardware = hardware
        self.limiter = limiter or Limiter()
        self._rates: dict[str, float] = {}
        self._rates_at = -RATES_TTL
        self._rates_lock = threading.Lock()

    def subjects(self, key: KeyInfo) -> list[Subject]:
        """The key and its team, where they have limits (reads the team; call in a thread)."""
        subjects = [Subject("key", key.name, key.limits)] if key.limits.any else []
        team = self._teams.get(key.team) if key.team else None
        if team is not None and team.limits.any:
            subjects.append(Subject("team", team.name, team.limits))
        if any(s.limits.monthly_budget is not None for s in subjects):
            self._refresh_rates()
        for subject in subjects:
            if not self.limiter.knows(subject):
                self.limiter.load(subject, self._baseline(subject))
        return subjects

    def rate(self, model: str | None = None) -> float:
        """Money per token of ``model``: the dearest measured model's when it has no
        measurement yet (or when None)."""
        dearest = max(self._rates.values(), default=0.0)
        return dearest if model is None else self._rates.get(model, dearest)

    def team_status(self, team: str) -> dict[str, float]:
        """What a team used this minute, day and month, for dashboards ({} if not seen yet)."""
        info = self._teams.get(team)
        return {} if info is None else self.limiter.used(Subject("team", team, info.limits))

    def key_status(self, key: KeyInfo) -> dict[str, float]:
        return self.limiter.used(Subject("key", key.name, key.limits))

    def _baseline(self, subject: Subject) -> Baseline:
        """Tokens and cost so far this UTC day and month, from the usage records."""
        self._usage.flush(timeout=5)
        if subject.kind == "key":
            names = [subject.name]
        else:
            names = [k.name for k in self._keys.list() if k.team == subject.name]
        day, month = period_starts(utcnow())
        day_tokens, _ = spent(self._engine, names, day, self._rates)
        month_tokens, month_cost = spent(self._engine, names, month, self._rates)
        return Baseline(day_tokens, month_tokens, month_cost)

    def _refresh_rates(self) -> None:
        with self._rates_lock:
            if time.monotonic() - self._rates_at < RATES_TTL or self._hardware is None:
                return
            uses = read_uses(self._engine, since=utcnow() - RATES_WINDOW)
            self._rates = model_rates(uses, self._hardware)
            self._rates_at = time.monotonic()


class Ticket:
    """One HTTP request's standing with the limiter: its subjects, reservations and usage."""

    def __init__(self, quotas: Quotas, subjects: list[Subject]) -> None:
        self._quotas = quotas
        self._subjects = subjects
        self._reservations: list[Reservation] = []
        self._used = 0
        self._cost = 0.0
        self._closed = False

    def reserve(self, model: str, view: ModelView, prompt: int, params: Any, n: int) -> Any:
        """Reserve the worst case; ``params`` with ``max_tokens`` cut to what was granted."""
        room = max(1, view.context_length - prompt)
        wanted = view.with_defaults(params).max_tokens
        max_tokens = room if wanted is None else min(wanted, room)
        reservation = self._quotas.limiter.reserve(
            self._subjects, prompt=prompt, max_tokens=max_tokens, n=n, rate=self._quotas.rate(model)
        )
        self._reservations.append(reservation)
        if reservation.max_tokens < max_tokens or wanted is None:
            # Marked as the request's choice, so a model's default cannot undo the cut.
            chosen = None if params.explicit is None else params.explicit | {"max_tokens"}
            return replace(params, max_tokens=reservation.max_tokens, explicit=chosen)
        return params

    def add_used(self, model: str, tokens: int) -> None:
        cost = tokens * self._quotas.rate(model)
        if self._closed:  # reported after the lease ended: count it all the same
            self._quotas.limiter.charge(self._subjects, tokens, cost)
            return
        self._used += tokens
        self._cost += cost

    def close(self) -> None:
        """Settle to the tokens really used (the first reservation takes them all)."""
        self._closed = True
        used, cost, self._used, self._cost = self._used, self._cost, 0, 0.0
        for reservation in self._reservations:
            self._quotas.limiter.settle(reservation, used, cost)
            used, cost = 0, 0.0


class MeteredView(ModelView):
    """A model view whose ``generate`` reserves quota before the engine sees the request."""

    def __init__(self, view: ModelView, ticket: Ticket, model: str) -> None:  # a wrapper
        self.__dict__.update(view.__dict__)
        self._view = view
        self._ticket = ticket
        self._model = model

    def generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        *,
        n: int = 1,
        cache_key: str = "",
        timeout: float | None = None,
    ) -> list[Generation]:
        granted = self._ticket.reserve(self._model, self._view, len(tokens), params, n)
        return self._view.generate(tokens, granted, n=n, cache_key=cache_key, timeout=timeout)


async def admit(request: Request, key: KeyInfo) -> None:
    """Count the request and refuse it if a limit is at its end (QuotaExceededError, 429)."""
    _ticket.set(None)
    quotas: Quotas | None = getattr(request.app.state, "quotas", None)
    if quotas is None:
        return
    subjects = await asyncio.to_thread(quotas.subjects, key)
    if not subjects:
        return
    if quotas.limiter.blocking:  # a database round trip: not on the event loop
        await asyncio.to_thread(quotas.limiter.admit, subjects)
    else:
        quotas.limiter.admit(subjects)
    ticket = Ticket(quotas, subjects)
    request.state.quota = ticket
    _ticket.set(ticket)


def metered(view: ModelView, stack: AsyncExitStack, model: str) -> ModelView:
    """``view`` of ``model``, reserving quota first when this request has limits; the
    reservation is settled when ``stack`` (the request's lease) closes."""
    ticket = _ticket.get()
    if ticket is None:
        return view
    stack.callback(ticket.close)
    # A stream whose body never started (the client left first) may never close its stack:
    # settle when the stack is collected, so no concurrent slot or reservation is lost.
    weakref.finalize(stack, ticket.close)
    return MeteredView(view, ticket, model)


def note_usage(request: Request, model: str, tokens: int) -> None:
    """Tokens one generation of this request really used (from its usage record)."""
    ticket: Ticket | None = getattr(request.state, "quota", None)
    if ticket is not None:
        ticket.add_used(model, tokens)
