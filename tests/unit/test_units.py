from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from hearth.config import Settings
from hearth.errors import ConfigError, ValidationError
from hearth.units import (
    FOREVER,
    format_size,
    parse_duration,
    parse_keep_alive,
    parse_moment,
    parse_size,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (2.5, 2.5),
        ("0", 0.0),
        ("45", 45.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("+2m", 120.0),
        ("-1m", -60.0),
        (" 10m ", 600.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("junk", ["", "soon", "5 m", "5mins", "m", "1d", "1h-5m", "--1", "1e3s"])
def test_parse_duration_rejects_junk(junk: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_duration(junk, "keep_alive")
    assert caught.value.param == "keep_alive"


def test_keep_alive_semantics() -> None:
    assert parse_keep_alive(None) is None  # not given: the caller's default applies
    assert parse_keep_alive("") is None
    assert parse_keep_alive("0") == 0.0  # unload as soon as idle
    assert parse_keep_alive(0) == 0.0
    assert parse_keep_alive("5m") == 300.0
    assert parse_keep_alive(3600) == 3600.0
    assert parse_keep_alive("-1") == FOREVER
    assert parse_keep_alive(-1) == FOREVER
    assert parse_keep_alive("-5m") == FOREVER
    assert parse_keep_alive(math.inf) == FOREVER


@pytest.mark.parametrize("junk", ["forever", "5 minutes", True, math.nan, "nan"])
def test_keep_alive_junk_names_the_parameter(junk: object) -> None:
    with pytest.raises(ValidationError, match="keep_alive") as caught:
        parse_keep_alive(junk)  # type: ignore[arg-type]
    assert caught.value.param == "keep_alive"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 2**20),
        ("512M", 512 * 2**20),
        ("8G", 8 * 2**30),
        ("8g", 8 * 2**30),
        ("1.5GiB", 3 * 2**29),
        ("2 GB", 2 * 2**30),
        ("64K", 64 * 2**10),
        ("1T", 2**40),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_percentage_needs_a_total() -> None:
    assert parse_size("50%", total=1000) == 500
    assert parse_size("12.5 %", total=8 * 2**30) == 2**30
    with pytest.raises(ValidationError):
        parse_size("50%")


@pytest.mark.parametrize("junk", ["", "lots", "8X", "G", "-1G", "8G8"])
def test_parse_size_rejects_junk(junk: str) -> None:
    with pytest.raises(ValidationError):
        parse_size(junk, "HEARTH_MAX_MEMORY")


def test_format_size() -> None:
    assert format_size(300) == "300 B"
    assert format_size(512 * 2**20) == "512.0 MiB"
    assert format_size(1.9 * 2**30) == "1.9 GiB"
    assert format_size(3 * 2**40) == "3.0 TiB"


def test_settings_defaults_half_the_ram_and_five_minutes() -> None:
    settings = Settings.from_env({})
    assert settings.keep_alive == 300.0
    assert settings.max_memory > 0
    assert settings.max_memory == Settings.from_env({"HEARTH_MAX_MEMORY": "50%"}).max_memory


def test_settings_memory_and_keep_alive_from_env() -> None:
    settings = Settings.from_env({"HEARTH_MAX_MEMORY": "6G", "HEARTH_KEEP_ALIVE": "-1"})
    assert settings.max_memory == 6 * 2**30
    assert settings.keep_alive == FOREVER
    assert Settings.from_env({"HEARTH_KEEP_ALIVE": "0"}).keep_alive == 0.0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"HEARTH_MAX_MEMORY": "plenty"}, "HEARTH_MAX_MEMORY"),
        ({"HEARTH_MAX_MEMORY": "0"}, "HEARTH_MAX_MEMORY"),
        ({"HEARTH_KEEP_ALIVE": "a while"}, "HEARTH_KEEP_ALIVE"),
    ],
)
def test_settings_reject_junk_naming_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "later"),
    [
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5d", timedelta(hours=36)),
        ("12h", timedelta(hours=12)),
        ("1h30m", timedelta(minutes=90)),
        ("90", timedelta(seconds=90)),
    ],
)
def test_parse_moment_spans(text: str, later: timedelta) -> None:
    assert parse_moment(text, "expires", now=NOW) == NOW + later
    assert parse_moment(text, "since", now=NOW, past=True) == NOW - later


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-12-31", datetime(2026, 12, 31, tzinfo=UTC)),
        ("2026-12-31T18:30", datetime(2026, 12, 31, 18, 30, tzinfo=UTC)),
        ("2026-12-31T18:30+02:00", datetime(2026, 12, 31, 16, 30, tzinfo=UTC)),
        ("2026-12-31T18:30Z", datetime(2026, 12, 31, 18, 30, tzinfo=UTC)),
    ],
)
def test_parse_moment_dates_are_utc(text: str, moment: datetime) -> None:
    parsed = parse_moment(text, "expires", now=NOW)
    assert parsed == moment and parsed.tzinfo is UTC


@pytest.mark.parametrize("junk", ["", "soon", "-3d", "-1h", "30 days", "2026-13-01"])
def test_parse_moment_rejects_junk_naming_the_parameter(junk: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_moment(junk, "expires", now=NOW)
    assert caught.value.param == "expires"
