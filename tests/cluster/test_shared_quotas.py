"""SharedLimiter: quota counters in the database, enforced together by every limiter on it.

Two limiters on one database file stand for two server processes; a fake clock moves time.
The races across real processes on PostgreSQL are in test_shared_quotas_postgres.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from hearth.db import create_database_engine
from hearth.errors import QuotaExceededError
from hearth.governance.limiter import Baseline, Limiter, Subject
from hearth.governance.limits import Limits
from hearth.governance.shared import QuotaLeaseRow, QuotaMinuteRow, SharedLimiter

START = 1_780_000_000.5  # 2026-05-28 20:26:40.5 UTC


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'hearth.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pair(engine: Engine, clock: FakeClock) -> tuple[SharedLimiter, SharedLimiter]:
    """Two limiters on one database: two server processes."""
    return SharedLimiter(engine, clock=clock), SharedLimiter(engine, clock=clock)


def key(name: str = "app", **limits: int | float) -> Subject:
    return Subject("key", name, Limits(**limits))  # type: ignore[arg-type]


def test_requests_per_minute_are_counted_across_processes(
    pair: tuple[SharedLimiter, SharedLimiter], clock: FakeClock
) -> None:
    first, second = pair
    subject = key(rpm=3)
    first.admit([subject])
    second.admit([subject])
    first.admit([subject])
    with pytest.raises(QuotaExceededError, match="3 requests per minute") as refused:
        second.admit([subject])
    assert refused.value.limit == "rpm"
    assert 60 <= refused.value.retry_after <= 61  # counted at the end of its second
    clock.now += 61
    second.admit([subject])  # the minute has passed
    assert first.used(subject)["requests_minute"] == 1


def test_a_reservation_in_one_process_leaves_less_room_in_the_other(
    pair: tuple[SharedLimiter, SharedLimiter],
) -> None:
    first, second = pair
    subject = key(monthly_tokens=1000)
    held = first.reserve([subject], prompt=100, max_tokens=500)
    assert held.max_tokens == 500
    cut = second.reserve([subject], prompt=100, max_tokens=500)
    assert cut.max_tokens == 300  # 1000 - 600 held - 100 prompt
    with pytest.raises(QuotaExceededError, match="monthly quota of 1,000 tokens"):
        second.reserve([subject], prompt=100, max_tokens=10)
    first.settle(held, 150)  # it really used 150: 450 come back
    assert second.used(subject)["tokens_month"] == 150
    again = second.reserve([subject], prompt=100, max_tokens=500)
    assert again.max_tokens == 1000 - 150 - 400 - 100


def test_settling_twice_counts_once(pair: tuple[SharedLimiter, SharedLimiter]) -> None:
    first, second = pair
    subject = key(daily_tokens=10_000)
    reservation = first.reserve([subject], prompt=10, max_tokens=90)
    first.settle(reservation, 40)
    first.settle(reservation, 40)
    first.release(reservation)
    assert second.used(subject) == {
        "requests_minute": 0,
        "tokens_minute": 0,
        "tokens_day": 40,
        "tokens_month": 40,
        "cost_month": 0.0,
        "in_flight": 0,
        "reserved_tokens": 0,
    }


def test_released_reservations_count_nothing(pair: tuple[SharedLimiter, SharedLimiter]) -> None:
    first, second = pair
    subject = key(monthly_tokens=1000)
    first.release(first.reserve([subject], prompt=100, max_tokens=900))
    assert second.reserve([subject], prompt=100, max_tokens=900).max_tokens == 900


def test_concurrent_generations_are_counted_across_processes(
    pair: tuple[SharedLimiter, SharedLimiter],
) -> None:
    first, second = pair
    subject = key(concurrent=2)
    one = first.reserve([subject], prompt=1, max_tokens=1)
    second.reserve([subject], prompt=1, max_tokens=1)
    with pytest.raises(QuotaExceededError, match="2 concurrent generations"):
        second.admit([subject])
    first.settle(one, 2)
    second.admit([subject])


def test_a_crashed_process_leases_expire(engine: Engine, clock: FakeClock) -> None:
    subject = key(concurrent=1, monthly_tokens=1000)
    crashed = SharedLimiter(engine, clock=clock, lease_ttl=30)
    crashed.reserve([subject], prompt=100, max_tokens=800)  # and never settles
    survivor = SharedLimiter(engine, clock=clock, lease_ttl=30)
    with pytest.raises(QuotaExceededError, match="concurrent"):
        survivor.reserve([subject], prompt=10, max_tokens=10)
    clock.now += 31
    assert survivor.reserve([subject], prompt=100, max_tokens=900).max_tokens == 900
    with engine.connect() as connection:  # the dead lease is gone, the live one stays
        assert connection.scalar(select(func.count()).select_from(QuotaLeaseRow)) == 1


def test_a_live_process_renews_its_leases(engine: Engine, clock: FakeClock) -> None:
    subject = key(concurrent=1)
    alive = SharedLimiter(engine, clock=clock, lease_ttl=30)
    reservation = alive.reserve([subject], prompt=1, max_tokens=1)
    for _ in range(4):
        clock.now += 20
        alive.renew()
    other = SharedLimiter(engine, clock=clock, lease_ttl=30)
    with pytest.raises(QuotaExceededError, match="concurrent"):
        other.admit([subject])
    alive.settle(reservation, 2)
    assert alive.open_leases() == 0
    other.admit([subject])


def test_tokens_per_minute_slide(
    pair: tuple[SharedLimiter, SharedLimiter], clock: FakeClock, engine: Engine
) -> None:
    first, second = pair
    subject = key(tpm=1000)
    first.settle(first.reserve([subject], prompt=100, max_tokens=700), 800)
    with pytest.raises(QuotaExceededError, match="tokens per minute") as refused:
        second.reserve([subject], prompt=100, max_tokens=200)
    assert 59 <= refused.value.retry_after <= 61
    clock.now += 30
    second.settle(second.reserve([subject], prompt=50, max_tokens=100), 150)
    clock.now += 31  # the first 800 have left the window, the 150 have not
    assert first.used(subject)["tokens_minute"] == 150
    first.admit([subject])  # under the lock, seconds that left the window are deleted
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(QuotaMinuteRow)) == 1


def test_day_and_month_roll_over(
    pair: tuple[SharedLimiter, SharedLimiter], clock: FakeClock
) -> None:
    first, second = pair
    subject = key(daily_tokens=100, monthly_tokens=150)
    first.settle(first.reserve([subject], prompt=10, max_tokens=90), 100)
    with pytest.raises(QuotaExceededError, match="daily quota") as refused:
        second.admit([subject])
    assert refused.value.limit == "daily_tokens"
    clock.now += 86_400
    assert second.reserve([subject], prompt=10, max_tokens=90).max_tokens == 40  # month: 50 left
    assert first.used(subject)["tokens_day"] == 0
    assert first.used(subject)["tokens_month"] == 100


def test_the_baseline_is_loaded_once_for_all_processes(
    pair: tuple[SharedLimiter, SharedLimiter],
) -> None:
    first, second = pair
    subject = key(monthly_tokens=1000)
    assert not first.knows(subject)
    first.load(subject, Baseline(day_tokens=300, month_tokens=700))
    assert second.knows(subject)
    second.load(subject, Baseline(month_tokens=5))  # counted already: ignored
    assert second.used(subject)["tokens_month"] == 700
    assert second.reserve([subject], prompt=100, max_tokens=500).max_tokens == 200


def test_key_and_team_are_reserved_together(pair: tuple[SharedLimiter, SharedLimiter]) -> None:
    first, second = pair
    team = Subject("team", "search", Limits(monthly_tokens=500))
    one, two = key("search-1"), key("search-2", rpm=100)
    first.reserve([one, team], prompt=100, max_tokens=200)
    assert second.reserve([two, team], prompt=100, max_tokens=200).max_tokens == 100
    assert second.used(team)["in_flight"] == 2


def test_budgets_in_money(pair: tuple[SharedLimiter, SharedLimiter]) -> None:
    first, second = pair
    team = Subject("team", "paying", Limits(monthly_budget=10.0))
    first.settle(first.reserve([team], prompt=100, max_tokens=500, rate=0.01), 600)  # 6.00
    assert second.reserve([team], prompt=100, max_tokens=500, rate=0.01).max_tokens == 300
    with pytest.raises(QuotaExceededError, match="monthly budget"):
        first.reserve([team], prompt=100, max_tokens=1, rate=0.01)


def test_it_is_a_limiter(engine: Engine) -> None:
    assert isinstance(SharedLimiter(engine), Limiter)
    assert SharedLimiter.blocking and not Limiter.blocking


def test_threads_racing_for_the_last_tokens_never_overshoot(engine: Engine) -> None:
    limiters = [SharedLimiter(engine), SharedLimiter(engine)]
    subject = key(monthly_tokens=5000)
    granted: list[int] = []
    lock = threading.Lock()

    def racer(limiter: SharedLimiter) -> None:
        while True:
            try:
                reservation = limiter.reserve([subject], prompt=30, max_tokens=70)
            except QuotaExceededError:
                return
            limiter.settle(reservation, reservation.tokens)
            with lock:
                granted.append(reservation.tokens)

    threads = [threading.Thread(target=racer, args=(limiters[i % 2],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) <= 5000
    assert sum(granted) > 5000 - 100
    assert limiters[0].used(subject)["tokens_month"] == sum(granted)
