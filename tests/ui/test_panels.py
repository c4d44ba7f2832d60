"""The quota and safety panels over real data: a limited key's counts through a live server,
and audit events from a real audit log."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import openai

from hearth.config import Settings
from hearth.db import open_database
from hearth.governance.limits import Limits
from hearth.safety.audit import AuditEvent, AuditLog
from hearth.server.ui.extensions import safety_panel
from tests.ui.conftest import CHAT_MODEL, Dashboard, login


def test_a_limited_key_shows_its_limits_and_use(dashboard: Dashboard) -> None:
    limited = dashboard.keys.create(
        "limited-app", models=None, expires=None, limits=Limits(rpm=50, daily_tokens=10_000)
    ).secret
    with openai.OpenAI(base_url=f"{dashboard.url}/v1", api_key=limited, max_retries=0) as api:
        api.completions.create(model=CHAT_MODEL, prompt="x", max_tokens=2)
    with login(dashboard) as (client, _):
        panel = client.get("/ui/api/quotas").json()
    assert panel["configured"] is True
    [row] = [row for row in panel["keys"] if row["name"] == "limited-app"]
    assert row["limits"] == "rpm=50, daily_tokens=10000"
    assert row["requests_minute"] >= 1


def test_safety_events_are_listed_without_text(tmp_path: Path) -> None:
    settings = Settings.from_env({"HEARTH_HOME": str(tmp_path)})
    engine = open_database(settings)
    audit = AuditLog(engine)
    try:
        event = AuditEvent(
            key_name="app",
            model="m:latest",
            endpoint="/v1/chat/completions",
            direction="input",
            rule="pii",
            category="email",
            action="redact",
        )
        audit.record(event)
        state = SimpleNamespace(
            settings=SimpleNamespace(safety={"default": {"pii": "redact"}}),
            safety=SimpleNamespace(audit=audit),
        )
        request = cast(Any, SimpleNamespace(app=SimpleNamespace(state=state)))
        panel = safety_panel(request)
    finally:
        audit.close()
        engine.dispose()
    assert panel["configured"] is True
    [event] = panel["events"]
    assert (event["key"], event["rule"], event["action"]) == ("app", "pii", "redact")
    unconfigured = SimpleNamespace(settings=SimpleNamespace(safety={}))
    off = safety_panel(cast(Any, SimpleNamespace(app=SimpleNamespace(state=unconfigured))))
    assert off["configured"] is False
