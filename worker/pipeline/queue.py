"""How a pipeline step hands work on without knowing Celery: a message for a task named by its contract.

The steps (worker/pipeline/) say *what* must run next — drain the intake queue, flush a buffer, send a batch,
settle waiting duplicates — as a `Message` passed to an `Enqueue` they are given. The Celery layer
(worker/celery_app/enqueue.py) publishes it by task name; a test passes a list's `append`. Work that must come
back later is raised as `worker.errors.RetryLater`, which the task adapters in tasks/ turn into Celery retries.

Messages carry ids and counts only (documents stay in Redis, credentials in settings); `argsrepr` and
`kwargsrepr` are what Flower and Celery's log lines show of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

__all__ = ["SEND_TASKS", "Enqueue", "Message", "TaskName"]


class TaskName(StrEnum):
    """The tasks of the pipeline, by the names their messages carry (the contract with running workers)."""

    ACCEPT_SUBMISSION = "erpsync.accept_submission"
    DRAIN_INTAKE = "erpsync.drain_intake"
    PROCESS_JOB = "erpsync.process_job"
    FLUSH_BUFFER = "erpsync.flush_buffer"  # an earlier version's flush message (flushes: worker/store/dispatch.py)
    SEND_NEXT = "erpsync.send_next"
    SEND_BATCH = "erpsync.send_batch"
    SEND_BATCHES = "erpsync.send_batches"
    SETTLE_DUPLICATE = "erpsync.settle_duplicate"


#: The tasks that go to the send queue (`<queue>.send`), served by the sender workers' threads: send tickets (which
#: also do the buffers' flushes as they come due), and the send messages of batches queued by an earlier version
#: (placed with the dispatcher when they come).
SEND_TASKS = frozenset({TaskName.SEND_NEXT, TaskName.SEND_BATCH, TaskName.SEND_BATCHES})


@dataclass(frozen=True, slots=True)
class Message:
    """One task message to publish: its task, arguments, delay and what may be shown of it."""

    task: TaskName
    args: Sequence[object] = ()  # JSON values: ids, counts, names
    kwargs: dict[str, object] = field(default_factory=dict)
    countdown: float | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None


class Enqueue(Protocol):
    """Publishes a message (worker/celery_app/enqueue.py in a worker; a recorder in tests)."""

    def __call__(self, message: Message, /) -> None: ...
