"""The Celery application, with its reliability settings chosen on purpose.

- JSON only (`task_serializer`, `accept_content`): no pickle, so a crafted message cannot run code.
- `task_acks_late`: a message is acknowledged after its task returns, so a crash mid-task redelivers it.
- `task_reject_on_worker_lost`: a pool child killed by a signal or OOM also gets its message requeued
  (acks_late alone would ack it).
- `worker_prefetch_multiplier=1`: a worker holds one unacknowledged message per pool slot. Prefetched
  messages older than the visibility timeout would be delivered twice; long batches should not wait
  behind a busy slot while an idle worker starves.
- `visibility_timeout` (ERPSYNC_VISIBILITY_TIMEOUT, 1 h): an unacked message is redelivered after this.
  Retry countdowns are capped far below it (ERPSYNC_RETRY_BACKOFF_CAP, 300 s), because an ETA message
  waits unacked inside a worker and would otherwise be redelivered while still waiting.
- Redelivery is expected (Redis makes Celery at-least-once); exactly-once towards the ERP is the job of
  our own state: the duplicate index and each batch's state recorded before and after its POST.
- No result backend: outcomes go to our own results store (worker/results.py).
- A lost broker connection (Redis restarted, failed over) can lose messages: a task that fails while Redis is
  away cannot publish its retry (Celery drops the message then). What they stood for is recorded in Redis, so
  when the connection comes back the worker runs the recovery a starting worker runs (RecoverAfterReconnect).
"""

from __future__ import annotations

import logging
from typing import Any

import click
import redis.exceptions as redis_errors
from celery import Celery, bootsteps
from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready
from kombu import Exchange, Queue

from worker import logs, priority, redaction
from worker.settings import get_settings
from worker.submissions import SubmissionListener

settings = get_settings()

app = Celery("erpsync", include=["tasks.jobs", "tasks.batches", "tasks.duplicates", "tasks.flush", "tasks.submissions"])
app.steps["worker"].add(SubmissionListener)  # raw-Redis producers' job messages (worker/submissions.py)
app.conf.update(
    broker_url=settings.broker_url(),
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": settings.visibility_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
    },
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    event_serializer="json",
    task_ignore_result=True,
    result_backend=None,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=settings.prefetch_multiplier,
    task_default_queue=settings.queue,
    task_default_exchange=settings.queue,
    task_default_routing_key=settings.queue,
    # A worker started without -Q serves both queues; `-Q <queue>` / `-Q <queue>.send` split them (Procfile).
    task_queues=[
        Queue(settings.queue, Exchange(settings.queue), routing_key=settings.queue),
        Queue(settings.send_queue_name, Exchange(settings.send_queue_name), routing_key=settings.send_queue_name),
    ],
    task_routes={
        "erpsync.send_batch": {"queue": settings.send_queue_name},
        "erpsync.send_batches": {"queue": settings.send_queue_name},
    },
    # Task events cost a sender about a quarter of its CPU per batch (measured: 7.8-10.4 ms per batch without,
    # 11.8-12.9 ms with; bench/README "Benchmark"), so workers start without them and Flower turns them on
    # while it runs (`erpsync flower` at once, Flower itself every 5 s for workers started later: Celery's
    # enable_events broadcast). `celery worker -E` keeps them on for good. No task-sent events: a queue's depth
    # is in `erpsync status` and the metrics, and every publish would pay for one.
    worker_send_task_events=False,
    task_send_sent_event=False,
    worker_hijack_root_logger=True,
    timezone="UTC",
    enable_utc=True,
)
app.user_options["worker"].add(
    click.Option(
        ("--nice",),
        type=click.IntRange(0, 19),
        default=0,
        help="erpsync: run this worker at a lower CPU priority (nice N; the session's autogroup too when the worker "
        "leads its session). The intake worker's Procfile line uses it, so that sends and the ERP get the CPU first "
        "(worker/priority.py).",
    )
)


class LowerPriority(bootsteps.Step):
    """`--nice N`: lower the worker's CPU priority before its pool forks (the children inherit it)."""

    label = "erpsync CPU priority"

    def __init__(self, parent: Any, nice: int = 0, **options: Any) -> None:
        super().__init__(parent, **options)
        done = priority.lower_priority(nice)
        if done:
            logging.getLogger(__name__).info("CPU priority lowered: %s", ", ".join(done))


app.steps["worker"].add(LowerPriority)

# rediss://: kombu needs the TLS options as broker_use_ssl (the same ones our own client takes).
if settings.redis_uses_tls:
    app.conf.broker_use_ssl = settings.redis_ssl_options()


# Tasks that only talk to Redis (intake, flushes) ride out a Redis restart: Celery retries them with
# backoff (at most a minute apart, 20 times) instead of failing the work.
REDIS_OUTAGE_RETRY: dict[str, Any] = {
    "autoretry_for": (redis_errors.ConnectionError, redis_errors.TimeoutError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 20,
}


@after_setup_logger.connect
@after_setup_task_logger.connect
def _install_redaction(logger: logging.Logger, *args: Any, **kwargs: Any) -> None:
    """Every handler Celery sets up gets the secrets filter, the log context and the structured formatter
    (worker/logs.py; ERPSYNC_LOG_FORMAT), Celery's own lines included."""
    redaction.install(logger)
    redaction.install()
    logs.configure(settings, logger)
    if logger is logging.getLogger():
        # billiard's pool logger (errors of pool processes) has a handler of its own.
        from celery.utils.log import get_multiprocessing_logger

        pool_logger = get_multiprocessing_logger()
        if pool_logger is not None:
            logs.configure(settings, pool_logger)


class RecoverAfterReconnect(bootsteps.StartStopStep):
    """Run the recovery again each time the consumer's broker connection is re-established.

    Celery restarts the consumer's steps after a lost connection; the first start is worker_ready's. The copies
    recovery queues are idempotent (tasks/recovery.py), so a reconnect that lost nothing costs a few no-op tasks."""

    label = "erpsync recovery after reconnect"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.connected_before = False

    def start(self, parent: Any) -> None:
        if not self.connected_before:
            self.connected_before = True
            return
        from tasks.recovery import recover

        try:
            recover()
        except Exception:  # the consumer must keep running; a later reconnect or worker start tries again
            logging.getLogger(__name__).exception("recovery after the broker connection came back failed")


app.steps["consumer"].add(RecoverAfterReconnect)


@worker_ready.connect
def _recover_on_start(**_: Any) -> None:
    """Re-queue what a worker that died may have held (see tasks/recovery.py)."""
    from tasks.recovery import recover

    try:
        recover()
    except Exception:  # a worker that cannot recover still serves new work; the log says why
        logging.getLogger(__name__).exception("recovery on start failed")
