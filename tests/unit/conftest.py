"""Unit tests run without the developer's shell settings: ERPSYNC_* variables are removed for each test (settings
read the environment), so a test sees the defaults unless it sets what it needs. The archive (on by default, an
SQLite file in the working directory) is off unless a test turns it on with a database of its own."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_erpsync_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ERPSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", "off")
