"""Unit tests run without the developer's shell settings: ERPSYNC_* variables are removed for each test (settings
read the environment), so a test sees the defaults unless it sets what it needs."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_erpsync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ERPSYNC_"):
            monkeypatch.delenv(name)
