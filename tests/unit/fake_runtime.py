"""The worker runtime's results store, coalescing buffer and intake queue on one fakeredis server, for unit tests
that run task code in-process (tasks/*.py reach them through worker.runtime)."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from worker.buffer import CoalescingBuffer
from worker.intake import IntakeQueue
from worker.results import ResultsStore
from worker.settings import Settings


def fake_runtime(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    """{"store", "buffer", "intake"} on a fresh fakeredis server, installed as the runtime's for the test."""
    from worker import runtime

    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    parts: dict[str, Any] = {
        "store": ResultsStore(client, settings),
        "buffer": CoalescingBuffer(client, settings),
        "intake": IntakeQueue(client, settings),
    }
    for name, part in parts.items():
        monkeypatch.setattr(runtime, name, lambda part=part: part)
    return parts
