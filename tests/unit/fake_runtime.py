"""The worker runtime's results store, coalescing buffer and intake queue on one fakeredis server, for unit tests
that run the pipeline's steps in-process (they reach them through worker.pipeline.runtime), and the task messages
those steps publish, captured."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from worker.pipeline.queue import Message, TaskName
from worker.settings import Settings
from worker.store.buffer import CoalescingBuffer
from worker.store.dispatch import Dispatcher
from worker.store.intake import IntakeQueue
from worker.store.lookalikes import LookalikeHolds
from worker.store.results import ResultsStore


def fake_runtime(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    """{"store", "buffer", "intake", "dispatcher", "lookalikes"} on a fresh fakeredis server, installed as the
    runtime's for the test."""
    from worker.pipeline import runtime

    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    parts: dict[str, Any] = {
        "store": ResultsStore(client, settings),
        "buffer": CoalescingBuffer(client, settings),
        "intake": IntakeQueue(client, settings),
        "dispatcher": Dispatcher(client, settings),
        "lookalikes": LookalikeHolds(client, settings),
    }
    for name, part in parts.items():
        monkeypatch.setattr(runtime, name, lambda part=part: part)
    return parts


def capture_messages(monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    """Every task message the pipeline publishes through the Celery app (worker/celery_app/enqueue.py), recorded
    as the pipeline's Message instead of being sent to a broker."""
    from worker.celery_app import app

    sent: list[Message] = []

    def send_task(name: str, args: Any = None, kwargs: Any = None, countdown: float | None = None,
                  argsrepr: str | None = None, kwargsrepr: str | None = None, **_: Any) -> None:  # fmt: skip
        sent.append(Message(TaskName(name), list(args or []), dict(kwargs or {}), countdown, argsrepr, kwargsrepr))

    monkeypatch.setattr(app, "send_task", send_task)
    return sent


def of_task(messages: list[Message], task: TaskName) -> list[Message]:
    """The messages of one task, in the order they were published."""
    return [m for m in messages if m.task == task]
