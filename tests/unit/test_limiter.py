"""The limiter's logic with a fake clock: windows, reservations, settlement, races."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from hearth.errors import QuotaExceededError, ValidationError
from hearth.governance.limiter import Baseline, Limiter, Subject
from hearth.governance.limits import Limits, parse_count, parse_money

T0 = datetime(2026, 3, 31, 23, 59, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(**limits: float) -> Subject:
    return Subject("key", "app-1", Limits(**limits))  # type: ignore[arg-type]


def test_rpm_is_a_sliding_minute_with_retry_after() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subject = key(rpm=2)
    limiter.admit([subject])
    clock.now += 20
    limiter.admit([subject])
    with pytest.raises(QuotaExceededError) as refused:
        limiter.admit([subject])
    assert refused.value.limit == "rpm"
    assert refused.value.retry_after == 40  # the first request leaves the window then
    assert "2 requests per minute" in str(refused.value)
    clock.now += 40
    limiter.admit([subject])


def test_concurrent_generations_are_counted_until_settled() -> None:
    limiter = Limiter(Clock())
    subject = key(concurrent=1)
    first = limiter.reserve([subject], prompt=5, max_tokens=10)
    with pytest.raises(QuotaExceededError, match="1 concurrent") as refused:
        limiter.reserve([subject], prompt=5, max_tokens=10)
    assert refused.value.limit == "concurrent"
    limiter.settle(first, 12)
    limiter.settle(first, 12)  # settling twice changes nothing
    limiter.reserve([subject], prompt=5, max_tokens=10)


def test_a_reservation_holds_the_worst_case_then_settles_to_the_real_count() -> None:
    limiter = Limiter(Clock())
    subject = key(daily_tokens=100)
    held = limiter.reserve([subject], prompt=10, max_tokens=50)
    assert held.tokens == 60 and held.max_tokens == 50
    assert limiter.used(subject)["reserved_tokens"] == 60
    limiter.settle(held, 25)  # the stream stopped early: it is billed what it used
    used = limiter.used(subject)
    assert used["tokens_day"] == 25 and used["reserved_tokens"] == 0 and used["in_flight"] == 0


def test_max_tokens_is_cut_to_the_room_left_and_refused_when_none() -> None:
    limiter = Limiter(Clock())
    subject = key(monthly_tokens=100)
    limiter.load(subject, Baseline(month_tokens=70))
    granted = limiter.reserve([subject], prompt=10, max_tokens=50)
    assert granted.max_tokens == 20  # 100 - 70 - 10: the answer ends with "length"
    limiter.settle(granted, 30)
    with pytest.raises(QuotaExceededError, match="monthly quota of 100 tokens") as refused:
        limiter.reserve([subject], prompt=1, max_tokens=5)
    assert refused.value.limit == "monthly_tokens"
    assert refused.value.retry_after == 60  # T0 is a minute before April
    with pytest.raises(QuotaExceededError):
        limiter.admit([subject])  # refused up front too, before any model loads


def test_calendar_windows_reset_in_utc() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subject = key(daily_tokens=10, monthly_tokens=10)
    limiter.settle(limiter.reserve([subject], prompt=5, max_tokens=5), 10)
    with pytest.raises(QuotaExceededError):
        limiter.admit([subject])
    clock.now += 61  # 00:00:01 on April 1st: a new day and a new month
    limiter.admit([subject])


def test_tpm_refuses_with_the_seconds_until_enough_tokens_expire() -> None:
    clock = Clock()
    limiter = Limiter(clock)
    subject = key(tpm=100)
    limiter.settle(limiter.reserve([subject], prompt=10, max_tokens=30), 40)
    clock.now += 15
    limiter.settle(limiter.reserve([subject], prompt=10, max_tokens=30), 40)
    with pytest.raises(QuotaExceededError, match="100 tokens per minute") as refused:
        limiter.reserve([subject], prompt=10, max_tokens=30)
    assert refused.value.retry_after == 45  # the first 40 tokens leave the window then
    clock.now += 45
    assert limiter.reserve([subject], prompt=10, max_tokens=30).max_tokens == 30


def test_a_request_bigger_than_the_whole_minute_is_cut_to_it() -> None:
    limiter = Limiter(Clock())
    granted = limiter.reserve([key(tpm=100)], prompt=10, max_tokens=500)
    assert granted.max_tokens == 90


def test_team_limits_are_shared_and_the_tightest_subject_wins() -> None:
    limiter = Limiter(Clock())
    team = Subject("team", "search", Limits(daily_tokens=50))
    one = Subject("key", "one", Limits())
    two = Subject("key", "two", Limits(daily_tokens=1000))
    limiter.settle(limiter.reserve([one, team], prompt=10, max_tokens=20), 30)
    granted = limiter.reserve([two, team], prompt=10, max_tokens=20)
    assert granted.max_tokens == 10
    with pytest.raises(QuotaExceededError, match="team 'search'"):
        limiter.reserve([one, team], prompt=10, max_tokens=20)


def test_money_budget_converts_to_tokens_at_the_model_rate() -> None:
    limiter = Limiter(Clock())
    team = Subject("team", "search", Limits(monthly_budget=1.0))
    limiter.load(team, Baseline(month_cost=0.5))
    granted = limiter.reserve([team], prompt=10, max_tokens=1000, rate=0.001)  # 500 tokens left
    assert granted.max_tokens == 490
    limiter.settle(granted, 500, cost=0.5)
    with pytest.raises(QuotaExceededError, match=r"monthly budget of 1\.00") as refused:
        limiter.admit([team])
    assert refused.value.limit == "monthly_budget"


def test_racing_threads_never_overshoot_a_quota() -> None:
    limiter = Limiter(Clock())
    subject = key(monthly_tokens=1000)
    settled: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            try:
                held = limiter.reserve([subject], prompt=7, max_tokens=40)
            except QuotaExceededError:
                return
            used = held.tokens  # the worst case: every request uses all it may
            limiter.settle(held, used)
            with lock:
                settled.append(used)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(settled) <= 1000
    assert sum(settled) >= 1000 - 7  # and the quota is used up to its last useful tokens
    assert limiter.used(subject)["tokens_month"] == sum(settled)


def test_usage_reported_after_settlement_still_counts() -> None:
    limiter = Limiter(Clock())
    subject = key(daily_tokens=100)
    limiter.settle(limiter.reserve([subject], prompt=5, max_tokens=50), 0)
    limiter.charge([subject], 30, 0.0)
    assert limiter.used(subject)["tokens_day"] == 30
    assert limiter.reserve([subject], prompt=5, max_tokens=100).max_tokens == 65


def test_release_gives_a_reservation_back() -> None:
    limiter = Limiter(Clock())
    subject = key(daily_tokens=100, concurrent=1)
    limiter.release(limiter.reserve([subject], prompt=50, max_tokens=50))
    assert limiter.reserve([subject], prompt=50, max_tokens=50).max_tokens == 50


def test_a_baseline_is_loaded_once() -> None:
    limiter = Limiter(Clock())
    subject = key(daily_tokens=100)
    assert not limiter.knows(subject)
    limiter.load(subject, Baseline(day_tokens=60))
    limiter.load(subject, Baseline(day_tokens=0))
    assert limiter.knows(subject)
    assert limiter.used(subject)["tokens_day"] == 60


@pytest.mark.parametrize(
    ("text", "count"), [("60", 60), ("20k", 20_000), ("2M", 2_000_000), ("1.5G", 1_500_000_000)]
)
def test_counts_parse(text: str, count: int) -> None:
    assert parse_count(text, "x") == count


@pytest.mark.parametrize("text", ["", "0", "-5", "2X", "0.5", "1e3"])
def test_bad_counts_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_count(text, "x")


def test_money_parses() -> None:
    assert parse_money("12.5", "budget") == 12.5
    for bad in ("0", "-1", "inf", "nan", "lots"):
        with pytest.raises(ValidationError):
            parse_money(bad, "budget")
