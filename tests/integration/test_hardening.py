"""Crafted Celery messages: a pickled task message is refused by the worker, never run."""

from __future__ import annotations

import time
import uuid

import pytest

from worker.devstack.stack import LocalStack

pytestmark = pytest.mark.integration


def test_a_pickled_task_message_is_refused_not_run(stack: LocalStack) -> None:
    """JSON only: pickle would let whoever can write to Redis run code in the worker."""
    from worker.celery_app.application import app

    marker = f"pickled-{uuid.uuid4().hex[:10]}"
    sent = app.send_task("erpsync.process_job", args=[marker], serializer="pickle", queue=stack.env["ERPSYNC_QUEUE"])
    deadline = time.monotonic() + 30
    while "untrusted content of type pickle" not in stack.logs():
        assert time.monotonic() < deadline, "the worker did not refuse the pickled message:\n" + stack.logs()[-3000:]
        time.sleep(0.2)
    time.sleep(1)  # had it been accepted, Celery would log "Task erpsync.process_job[<id>] received" by now
    assert f"[{sent.id}] received" not in stack.logs()
