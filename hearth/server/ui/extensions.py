"""Panels whose features are still being built: each answers ``{"configured": false, ...}``
until its feature replaces the function here with one that returns its data (with
``"configured": true``). The page shows "not configured" and the message until then.

- :func:`quota_panel` (``GET /ui/api/quotas``): limits and spend per key and per team.
- :func:`safety_panel` (``GET /ui/api/safety``): safety events from the audit log.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request


def quota_panel(request: Request) -> dict[str, Any]:
    return {
        "configured": False,
        "message": "Quotas and budgets are not configured on this server.",
        "keys": [],
        "teams": [],
    }


def safety_panel(request: Request) -> dict[str, Any]:
    return {
        "configured": False,
        "message": "The safety pipeline and its audit log are not configured on this server.",
        "events": [],
    }
