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
- No result backend: outcomes go to our own results store (worker/store/results.py).
- A lost broker connection (Redis restarted, failed over) can lose messages: a task that fails while Redis is
  away cannot publish its retry (Celery drops the message then). What they stood for is recorded in Redis, so
  when the connection comes back the worker runs the recovery a starting worker runs (RecoverAfterReconnect).
"""

from __future__ import annotations

from typing import Any

import click
from celery import Celery  # type: ignore[import-untyped]  # celery ships no type hints
from kombu import Exchange, Queue

from worker.pipeline.queue import SEND_TASKS
from worker.settings import get_settings
from worker.store.errors import OUTAGE_ERRORS

__all__ = ["REDIS_OUTAGE_RETRY", "TASK_MODULES", "app", "settings"]

#: The settings the app is configured with, read at import (bootsteps.py configures the logs with them too).
settings = get_settings()

#: The task modules a worker imports (tasks/): thin adapters of the pipeline's steps.
TASK_MODULES = ["tasks.intake", "tasks.flush", "tasks.send", "tasks.duplicates", "tasks.submissions"]

app = Celery("erpsync", include=TASK_MODULES)
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
    task_routes={name.value: {"queue": settings.send_queue_name} for name in SEND_TASKS},
    # Task events cost a sender about a quarter of its CPU per batch (measured: 7.8-10.4 ms per batch without,
    # 11.8-12.9 ms with; docs/benchmarks.md), so workers start without them and Flower turns them on
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
        "(worker/celery_app/priority.py).",
    )
)


# rediss://: kombu needs the TLS options as broker_use_ssl (the same ones our own client takes).
if settings.redis_uses_tls:
    app.conf.broker_use_ssl = settings.redis_ssl_options()


# Tasks that only talk to Redis (intake, flushes) ride out a Redis restart: Celery retries them with
# backoff (at most a minute apart, 20 times) instead of failing the work.
REDIS_OUTAGE_RETRY: dict[str, Any] = {
    "autoretry_for": OUTAGE_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 20,
}
