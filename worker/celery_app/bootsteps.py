"""What a Celery worker of erpsync does besides running tasks: its bootsteps and signal handlers.

- `LowerPriority`: `celery worker --nice N` lowers the worker's CPU priority before its pool forks.
- `SubmissionListener`: on workers that consume the intake queue, a thread takes raw producers' job messages
  off the submit list and sends their accept tasks (worker/celery_app/listener.py).
- `SendHeartbeat`: on workers that consume the send queue, a thread renews the leases of the batches the worker
  holds and offers a send ticket when work is due with none counted (worker/pipeline/dispatch.py, `heartbeat`).
- `IndexGuard`: with the archive on, on workers that consume the intake queue: the archive's schema is checked
  at start (an SQLite file is migrated; PostgreSQL must be, by `erpsync archive migrate`, or the worker refuses
  to start), and a thread checks every few seconds that Redis still holds the duplicate index
  (worker/archive/guard.py); intake is asked for again when the index comes back.
- Recovery (worker/pipeline/recovery.py) when the worker is ready, and again whenever the consumer's broker
  connection comes back (`RecoverAfterReconnect`): a lost connection can lose messages.
- Every log handler Celery sets up gets the secrets filter, the log context and the structured formatter.

Registered on the app when this module is imported (worker/celery_app/__init__.py does).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

# Celery ships no type hints (neither py.typed nor stubs): mypy is told so for each of its imports.
from celery import bootsteps  # type: ignore[import-untyped]
from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready  # type: ignore[import-untyped]
from celery.utils.log import get_multiprocessing_logger  # type: ignore[import-untyped]
from sqlalchemy import Engine

from worker import redaction
from worker.archive import IndexState, check_index, ready_engine
from worker.archive.archiver import INDEX_CHECK_SECONDS
from worker.celery_app.application import app, settings
from worker.celery_app.enqueue import publish
from worker.celery_app.listener import Listener
from worker.celery_app.priority import lower_priority
from worker.errors import ArchiveError
from worker.observability import logs
from worker.pipeline.dispatch import heartbeat
from worker.pipeline.intake import request_intake
from worker.pipeline.queue import Message, TaskName
from worker.pipeline.recovery import recover
from worker.settings import get_settings
from worker.store.client import get_redis
from worker.store.outbox import Outbox

__all__ = ["IndexGuard", "LowerPriority", "RecoverAfterReconnect", "SendHeartbeat", "SubmissionListener", "send_accept"]

log = logging.getLogger(__name__)


class LowerPriority(bootsteps.Step):
    """`--nice N`: lower the worker's CPU priority before its pool forks (the children inherit it)."""

    label = "erpsync CPU priority"

    def __init__(self, parent: Any, nice: int = 0, **options: Any) -> None:
        super().__init__(parent, **options)
        done = lower_priority(nice)
        if done:
            log.info("CPU priority lowered: %s", ", ".join(done))


def send_accept(submission_id: str, size: int) -> None:
    """Queue the accept task of a held message; what Flower and the logs show is its id and size only."""
    publish(Message(TaskName.ACCEPT_SUBMISSION, args=[submission_id], argsrepr=f"({submission_id!r}, {size} bytes)"))


class SubmissionListener(bootsteps.StartStopStep):
    """The listener as a step of the Celery worker: on workers that consume the intake queue only, started after
    the pool (so no pool process is forked from a process with a running listener thread at start-up) and
    stopped with the worker."""

    label = "erpsync submissions"
    requires = ("celery.worker.components:Pool",)

    def include_if(self, w: Any) -> bool:
        return get_settings().queue in w.app.amqp.queues.consume_from

    def create(self, w: Any) -> Listener:
        settings = get_settings()
        return Listener(get_redis(settings), settings, send_accept)


class SendHeartbeat(bootsteps.StartStopStep):
    """The heartbeat of a sender worker: every third of ERPSYNC_SEND_LEASE_SECONDS, the batches its threads hold
    stay theirs for another lease (a killed worker's come back within one), and a ticket is offered when work is
    due and none is counted."""

    label = "erpsync send heartbeat"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def include_if(self, w: Any) -> bool:
        return get_settings().send_queue_name in w.app.amqp.queues.consume_from

    def start(self, parent: Any) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="erpsync-send-heartbeat", daemon=True)
        self.thread.start()

    def stop(self, parent: Any) -> None:
        self.stopping.set()

    def _run(self) -> None:
        every = max(1.0, get_settings().send_lease_seconds / 3)
        while not self.stopping.wait(every):
            try:
                heartbeat(publish)
            except Exception:  # Redis away: the next beat tries again; a lease ends only after three missed
                log.warning("send heartbeat failed; trying again in %.0fs", every, exc_info=True)


class IndexGuard(bootsteps.StartStopStep):
    """The archive's schema checked at start, and the duplicate index watched while the worker runs."""

    label = "erpsync index guard"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.stopping = threading.Event()
        self.engine: Engine | None = None

    def include_if(self, w: Any) -> bool:
        current = get_settings()
        return current.archive_enabled and current.queue in w.app.amqp.queues.consume_from

    def start(self, parent: Any) -> None:
        current = get_settings()
        try:
            self.engine = ready_engine(current)
        except ArchiveError as exc:
            log.critical("the worker cannot start: %s", exc)
            raise SystemExit(2) from None
        self._check()
        self.stopping.clear()
        threading.Thread(target=self._run, name="erpsync-index-guard", daemon=True).start()

    def stop(self, parent: Any) -> None:
        self.stopping.set()

    def _check(self) -> IndexState | None:
        current = get_settings()
        assert self.engine is not None
        try:
            return check_index(Outbox(get_redis(current), current), self.engine, current)
        except Exception:  # Redis or the database away: the next check tries again, intake waits meanwhile
            log.warning("the duplicate index could not be checked; trying again", exc_info=True)
            return None

    def _run(self) -> None:
        while not self.stopping.wait(INDEX_CHECK_SECONDS):
            if self._check() in (IndexState.STARTED, IndexState.RESTORED):
                request_intake(publish, get_settings().intake_chunk_docs)  # what waited for the index goes on


class RecoverAfterReconnect(bootsteps.StartStopStep):
    """Run the recovery again each time the consumer's broker connection is re-established.

    Celery restarts the consumer's steps after a lost connection; the first start is worker_ready's. The copies
    recovery queues are idempotent (worker/pipeline/recovery.py), so a reconnect that lost nothing costs a few
    no-op tasks."""

    label = "erpsync recovery after reconnect"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.connected_before = False

    def start(self, parent: Any) -> None:
        if not self.connected_before:
            self.connected_before = True
            return
        try:
            recover(publish)
        except Exception:  # the consumer must keep running; a later reconnect or worker start tries again
            log.exception("recovery after the broker connection came back failed")


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """Re-queue what a worker that died may have held (see worker/pipeline/recovery.py)."""
    try:
        recover(publish)
    except Exception:  # a worker that cannot recover still serves new work; the log says why
        log.exception("recovery on start failed")


@after_setup_logger.connect
@after_setup_task_logger.connect
def _install_redaction(logger: logging.Logger, *args: Any, **kwargs: Any) -> None:
    """Every handler Celery sets up gets the secrets filter, the log context and the structured formatter
    (worker/observability/logs.py; ERPSYNC_LOG_FORMAT), Celery's own lines included."""
    redaction.install(logger)
    redaction.install()
    logs.configure(settings, logger)
    if logger is logging.getLogger():
        # billiard's pool logger (errors of pool processes) has a handler of its own.
        pool_logger = get_multiprocessing_logger()
        if pool_logger is not None:
            logs.configure(settings, pool_logger)


app.steps["worker"].add(LowerPriority)
app.steps["worker"].add(SubmissionListener)  # raw-Redis producers' job messages (worker/producer/submissions.py)
app.steps["worker"].add(IndexGuard)  # the archive's schema, and Redis still holding the duplicate index
app.steps["worker"].add(SendHeartbeat)  # senders: their batches' leases renewed (worker/pipeline/dispatch.py)
app.steps["consumer"].add(RecoverAfterReconnect)
