"""`hearth keys` limits, `hearth teams` and `hearth cost` in a real process (run_hearth)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hearth.config import Settings
from hearth.db import open_database
from hearth.governance.cost import busy_seconds, load_prices
from hearth.governance.limits import Limits
from hearth.governance.store import TeamStore
from hearth.server.keys import KeyStore
from hearth.server.usage import UsageLog, UsageRecord
from tests.cli.process import run_hearth

END = datetime.now(UTC) - timedelta(hours=1)


def stored(home: Path) -> tuple[list[Limits], list[tuple[str, Limits]]]:
    engine = open_database(Settings.from_env({"HEARTH_HOME": str(home)}))
    try:
        keys = [info.limits for info in KeyStore(engine).list()]
        teams = [(team.name, team.limits) for team in TeamStore(engine).list()]
    finally:
        engine.dispose()
    return keys, teams


def test_keys_create_with_a_team_and_limits(tmp_path: Path) -> None:
    created = run_hearth(
        tmp_path,
        *("keys", "create", "app-1", "--team", "search", "--rpm", "60", "--tpm", "20k"),
        *("--daily-tokens", "500k", "--monthly-tokens", "2M", "--concurrent", "4"),
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("hth_")
    changed = run_hearth(tmp_path, "keys", "set", "app-1", "--rpm", "none", "--tpm", "30000")
    assert changed.returncode == 0, changed.stderr
    assert "tpm 30,000" in changed.stdout and "rpm" not in changed.stdout
    keys, _ = stored(tmp_path)
    assert keys == [
        Limits(tpm=30_000, daily_tokens=500_000, monthly_tokens=2_000_000, concurrent=4)
    ]


def test_bad_limits_are_one_line_errors(tmp_path: Path) -> None:
    for args in (("--rpm", "lots"), ("--monthly-tokens", "0"), ("--monthly-budget", "-3")):
        result = run_hearth(tmp_path, "keys", "create", "app-1", *args)
        assert result.returncode != 0
        assert "invalid" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert stored(tmp_path) == ([], [])


def test_teams_create_list_set(tmp_path: Path) -> None:
    created = run_hearth(
        tmp_path, "teams", "create", "search", "--monthly-tokens", "2M", "--monthly-budget", "50"
    )
    assert created.returncode == 0, created.stderr
    assert "monthly tokens 2,000,000, monthly budget 50.00" in created.stdout
    run_hearth(tmp_path, "keys", "create", "app-1", "--team", "search")
    changed = run_hearth(
        tmp_path, "teams", "set", "search", "--rpm", "100", "--monthly-tokens", "none"
    )
    assert changed.returncode == 0, changed.stderr
    listed = run_hearth(tmp_path, "teams", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("search"))
    assert line.split()[1] == "1"  # one key
    assert "rpm 100, monthly budget 50.00" in line
    _, teams = stored(tmp_path)
    assert teams == [("search", Limits(rpm=100, monthly_budget=50.0))]
    unknown = run_hearth(tmp_path, "teams", "set", "nobody", "--rpm", "1")
    assert unknown.returncode != 0 and "no team has this name" in unknown.stderr
    twice = run_hearth(tmp_path, "teams", "create", "search")
    assert twice.returncode != 0 and "exists" in twice.stderr


def seed_usage(home: Path) -> None:
    """Two keys of two teams on model m1: two 1-second requests that overlap by half a second
    (busy 1.5 s for 2,000 tokens), and one on m2 alone (1 s for 500 tokens)."""
    engine = open_database(Settings.from_env({"HEARTH_HOME": str(home)}))
    keys = KeyStore(engine)
    keys.create("app-1", models=None, expires=None, team="search")
    keys.create("app-2", models=None, expires=None, team="ads")
    rows = [
        ("app-1", "m1", END, 1000.0, 400, 600),
        ("app-2", "m1", END + timedelta(seconds=0.5), 1000.0, 500, 500),
        ("app-2", "m2", END + timedelta(minutes=5), 1000.0, 100, 400),
    ]
    with UsageLog(engine) as log:
        for key, model, end, ms, prompt, completion in rows:
            log.record(
                UsageRecord(
                    request_id=f"{key}-{model}",
                    key_name=key,
                    model=model,
                    endpoint="/v1/chat/completions",
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    duration_ms=ms,
                    created=end,
                )
            )
    engine.dispose()


def cost_lines(home: Path, *args: str) -> dict[str, list[str]]:
    """The output's lines by their first word (the last line of each first word wins)."""
    result = run_hearth(home, "cost", *args)
    assert result.returncode == 0, result.stderr
    return {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}


def hosted_line(home: Path, model: str) -> list[str]:
    result = run_hearth(home, "cost")
    return next(line.split() for line in result.stdout.splitlines() if f" {model} " in line)


def test_cost_per_model_from_busy_time(tmp_path: Path) -> None:
    seed_usage(tmp_path)
    (tmp_path / "hearth.toml").write_text("[hardware]\ncost_per_hour = 3600\n")  # 1 a second
    lines = cost_lines(tmp_path)
    # m1: 1.5 busy seconds = 1.50 for 2,000 tokens: 750 per 1M; m2: 1.00 for 500: 2,000 per 1M.
    assert lines["m1"][1:] == ["2", "900", "1,100", "1,333.3", "1.5000", "750.0000"]
    assert lines["m2"][1:] == ["1", "100", "400", "500.0", "1.0000", "2,000.0000"]
    assert lines["total"][-2] == "2.5000"
    assert "machine:" in lines and "3600 USD per hour" in " ".join(lines["machine:"])
    assert "2025-06-01" in " ".join(lines["hosted"])  # the prices' date, and a warning
    assert "refresh" in lines["hosted"]
    # 40% of the tokens were prompt tokens: gpt-4o-mini at 0.15 in / 0.60 out is 0.42.
    assert hosted_line(tmp_path, "gpt-4o-mini")[-3:] == ["0.15", "0.60", "0.42"]
    assert "(40% prompt tokens, as measured here)" in " ".join(lines["Hosted"])


def test_cost_by_key_and_team(tmp_path: Path) -> None:
    seed_usage(tmp_path)
    (tmp_path / "hearth.toml").write_text(
        "[hardware]\npurchase_price = 7305\namortisation_months = 10\nwatts = 0\n"
        "price_per_kwh = 0\ncurrency = 'EUR'\n"
    )  # 1 EUR an hour
    by_key = cost_lines(tmp_path, "--by", "key")
    # app-1: 1,000 m1 tokens at 0.75 per 1M tokens-hour... in money: 1.5 s of 1 EUR/h shared
    # by m1's 2,000 tokens, so app-1 pays half of m1 and app-2 the other half plus all of m2.
    m1_half = 1.5 / 3600 / 2
    assert by_key["app-1"][5] == f"{m1_half:.4f}"
    assert by_key["app-2"][5] == f"{m1_half + 1 / 3600:.4f}"
    by_team = cost_lines(tmp_path, "--by", "team", "--since", "7d")
    assert set(by_team) >= {"search", "ads"}
    assert by_team["search"][2:4] == ["400", "600"]


def test_cost_without_hardware_says_what_to_add(tmp_path: Path) -> None:
    seed_usage(tmp_path)
    result = run_hearth(tmp_path, "cost")
    assert result.returncode == 0, result.stderr
    assert "no [hardware] profile in hearth.toml" in result.stderr
    assert "m1" in result.stdout


def test_a_bad_hardware_profile_is_one_line(tmp_path: Path) -> None:
    bad = {
        "cost_per_hour = 'two'": "cost_per_hour must be a number",
        "cost_per_hour = -1": "cost_per_hour must be a number of at least 0",
        "purchase_price = 1000": "needs cost_per_hour, or purchase_price and amortisation_months",
        "cost_per_hour = 1\nwat = 3": "unknown keys: wat",
        "purchase_price = 10\namortisation_months = 3\nwatts = 100": "go together",
    }
    for body, message in bad.items():
        (tmp_path / "hearth.toml").write_text(f"[hardware]\n{body}\n")
        result = run_hearth(tmp_path, "cost")
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_busy_time_counts_overlaps_once_and_prices_are_dated() -> None:
    from hearth.governance.cost import Use

    def use(start: float, seconds: float) -> Use:
        return Use("m", None, END + timedelta(seconds=start + seconds), seconds, 1, 1)

    assert busy_seconds([use(0, 1), use(0.5, 1), use(3, 1), use(3.2, 0.1)]) == 2.5
    assert busy_seconds([]) == 0.0
    prices = load_prices()
    assert prices.read.year >= 2025 and prices.currency == "USD"
    assert {p.name for p in prices.models} >= {"gpt-4o-mini", "claude-sonnet-4"}
