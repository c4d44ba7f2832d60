"""`hearth keys create --admin` makes a key that may log in to the dashboard."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.config import Settings
from hearth.db import open_database
from hearth.server.keys import KeyStore


def test_admin_flag_from_the_cli(hearth_home: Path, settings: Settings) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "create", "ops", "--admin"]).exit_code == 0
    assert runner.invoke(app, ["keys", "create", "app"]).exit_code == 0
    engine = open_database(settings)
    try:
        admins = {info.name: info.admin for info in KeyStore(engine).list()}
    finally:
        engine.dispose()
    assert admins == {"ops": True, "app": False}
