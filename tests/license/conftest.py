"""Fixtures for license tests."""

from __future__ import annotations

import pytest

from hearth.config import Settings
from hearth.store import Store


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings)
