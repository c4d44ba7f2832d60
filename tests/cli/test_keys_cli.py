"""`hearth keys` and `hearth usage` through the real app, on SQLite in an isolated HEARTH_HOME."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.config import get_settings
from hearth.db import open_database
from hearth.server.keys import KeyStore
from hearth.server.usage import UsageLog, UsageRecord

runner = CliRunner()


def hearth(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_secret_once_and_it_verifies(hearth_home: Path) -> None:
    code, stdout, stderr = hearth("keys", "create", "app-1", "--models", "tiny, gemma3:*")
    assert code == 0, stderr
    secret = stdout.strip()
    assert secret.startswith("hth_") and len(secret) == 47
    assert "shown only once" in stderr and secret not in stderr
    assert f"created API key 'app-1' ({secret[:12]}...)" in stderr

    engine = open_database(get_settings())
    try:
        info = KeyStore(engine).verify(secret)
    finally:
        engine.dispose()
    assert (info.name, info.models) == ("app-1", ("tiny", "gemma3:*"))
    assert (hearth_home / "hearth.db").is_file()


def test_list_and_revoke(hearth_home: Path) -> None:
    secret = hearth("keys", "create", "app-1", "--team", "search", "--expires", "30d")[1].strip()
    hearth("keys", "create", "a-much-longer-key-name-for-the-batch-jobs", "--expires", "2099-12-31")

    code, stdout, _ = hearth("keys", "list")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "PREFIX", "TEAM", "MODELS", "CREATED", "EXPIRES", "LAST", "USED", "STATUS"
    ]  # fmt: skip
    first, second = lines[1].split(), lines[2].split()
    assert first[:4] == ["app-1", secret[:12], "search", "all"]
    assert first[-1] == "active" and "just now" in lines[1]
    assert second[0] == "a-much-longer-key-name-for-the-batch-jobs"  # never cut short
    assert "2099-12-31 00:00 UTC" in lines[2]
    assert secret not in stdout

    code, stdout, _ = hearth("keys", "revoke", "app-1")
    assert (code, stdout.strip()) == (0, f"revoked API key 'app-1' ({secret[:12]}...)")
    assert hearth("keys", "list")[1].splitlines()[1].split()[-1] == "revoked"


def test_errors_are_one_line(hearth_home: Path) -> None:
    hearth("keys", "create", "app-1")
    for args, message in [
        (("keys", "revoke", "nope"), "invalid name='nope': no API key has this name"),
        (("keys", "create", "app-1"), "an API key with this name exists"),
        (("keys", "create", "x", "--expires", "soon"), "invalid expires='soon'"),
        (("keys", "create", "x", "--expires", "2001-01-01"), "must be in the future"),
        (("keys", "create", "bad name"), "invalid name='bad name'"),
        (("usage", "--since", "yesterday"), "invalid since='yesterday'"),
    ]:
        code, _, stderr = hearth(*args)
        assert code == 1, args
        assert stderr.startswith("error: ") and message in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr


def test_list_with_no_keys_hints_at_create(hearth_home: Path) -> None:
    code, stdout, stderr = hearth("keys", "list")
    assert code == 0
    assert stdout.split() == ["NAME", "PREFIX", "TEAM", "MODELS", "CREATED", "EXPIRES", "LAST",
                              "USED", "STATUS"]  # fmt: skip
    assert "hearth keys create NAME" in stderr


def test_usage_by_key_and_model(hearth_home: Path) -> None:
    engine = open_database(get_settings())
    with UsageLog(engine) as usage:
        for n in range(3):
            usage.record(
                UsageRecord(
                    request_id=f"r{n}",
                    key_name="app-1" if n else None,
                    model="tiny:latest" if n < 2 else "gemma3:270m",
                    endpoint="/v1/completions",
                    prompt_tokens=1000,
                    completion_tokens=10 * (n + 1),
                    ttft_ms=12.0,
                    duration_ms=250.0,
                    status="error" if n == 2 else "ok",
                )
            )
    engine.dispose()

    code, stdout, _ = hearth("usage")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split() == ["KEY", "REQUESTS", "ERRORS", "ABORTED", "FILTERED", "PROMPT",
                                "COMPLETION", "CACHED", "TOTAL", "TTFT", "MS", "TIME",
                                "MS"]  # fmt: skip
    assert lines[1].split() == ["app-1", "2", "1", "0", "0", "2,000", "50", "0", "2,050", "12",
                                "250"]  # fmt: skip
    assert lines[2].split() == ["(no", "key)", "1", "0", "0", "0", "1,000", "10", "0", "1,010",
                                "12", "250"]  # fmt: skip

    code, stdout, _ = hearth("usage", "--by", "model", "--since", "1h")
    assert code == 0
    assert [line.split()[0] for line in stdout.splitlines()] == ["MODEL", "tiny:latest",
                                                                 "gemma3:270m"]  # fmt: skip
    assert hearth("usage", "--since", "2099-01-01")[1].splitlines()[1:] == []
    assert hearth("usage", "--by", "team")[0] == 2  # typer refuses the choice


def test_keys_without_a_command_shows_help(hearth_home: Path) -> None:
    code, stdout, _ = hearth("keys")
    assert "create" in stdout and "revoke" in stdout
    assert code in (0, 2)
