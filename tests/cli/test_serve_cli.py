from pathlib import Path

from tests.cli.process import run_hearth


def test_serve_refuses_a_public_bind_without_keys(hearth_home: Path) -> None:
    result = run_hearth(hearth_home, "serve", "--host", "0.0.0.0:11499", timeout=60)
    assert result.returncode == 1
    assert "refusing to bind 0.0.0.0" in result.stderr
    assert result.stderr.count("\n") == 1


def test_serve_rejects_a_malformed_host(hearth_home: Path) -> None:
    result = run_hearth(hearth_home, "serve", "--host", "localhost", timeout=60)
    assert result.returncode == 1
    assert "host:port" in result.stderr
