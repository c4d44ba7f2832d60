"""The dashboard's quota and safety panels, over the features' own data.

- :func:`quota_panel` (``GET /ui/api/quotas``): each key and team with limits, and what it used
  this minute, day and month (in-process counts, :meth:`Quotas.key_status`).
- :func:`safety_panel` (``GET /ui/api/safety``): the latest safety decisions from the audit log
  (who, model, rule, action; never the text, which the log does not keep).

Each answers ``{"configured": false, "message": ...}`` when its feature has nothing to show, and
the page says so.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import Request

from hearth.governance.limits import Limits
from hearth.governance.store import TeamStore
from hearth.server.keys import KeyStore

SAFETY_EVENTS = 200  # newest first; the audit table keeps them all


def quota_panel(request: Request) -> dict[str, Any]:
    state = request.app.state
    keys: KeyStore = state.keys
    limited = [key for key in keys.list() if key.limits.any]
    teams = [team for team in TeamStore(state.database).list() if team.limits.any]
    if not limited and not teams:
        return {
            "configured": False,
            "message": "No key or team has limits (hearth keys create ... --rpm/--tpm/--team).",
            "keys": [],
            "teams": [],
        }
    return {
        "configured": True,
        "message": "",
        "keys": [
            _row("key", key.name, key.limits, state.quotas.key_status(key), team=key.team)
            for key in limited
        ],
        "teams": [
            _row("team", team.name, team.limits, state.quotas.team_status(team.name))
            for team in teams
        ],
    }


def _row(
    kind: str, name: str, limits: Limits, used: dict[str, float], team: str | None = None
) -> dict[str, Any]:
    limit_text = ", ".join(f"{k}={v:g}" for k, v in asdict(limits).items() if v is not None)
    row: dict[str, Any] = {"kind": kind, "name": name, "team": team or "", "limits": limit_text}
    for field in ("requests_minute", "tokens_minute", "tokens_day", "tokens_month"):
        row[field] = used.get(field, 0)
    return row


def safety_panel(request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    if not settings.safety:
        return {
            "configured": False,
            "message": "No [safety] table in hearth.toml: no filters run, nothing is audited.",
            "events": [],
        }
    events = request.app.state.safety.audit.events(limit=SAFETY_EVENTS)
    return {
        "configured": True,
        "message": "",
        "events": [
            {
                "time": event.created.isoformat(timespec="seconds"),
                "key": event.key_name or "",
                "model": event.model,
                "endpoint": event.endpoint,
                "direction": event.direction,
                "rule": event.rule,
                "category": event.category,
                "action": event.action,
                "count": event.count,
            }
            for event in events
        ],
    }
