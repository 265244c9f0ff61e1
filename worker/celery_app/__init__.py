"""The Celery layer: the app and its settings, publishing by task name, the worker's bootsteps and signals.

    application.py  the app (`celery -A worker` finds it through worker/__init__.py) and its reliability settings
    enqueue.py      the pipeline's Enqueue: a message published by its task's name
    adapter.py      what the task adapters in tasks/ share: a step's RetryLater becomes the task's Celery retry
    bootsteps.py    CPU priority, the submissions listener, recovery on start and reconnect, log handlers
    listener.py     the thread that takes raw producers' messages off the submit list
    priority.py     `celery worker --nice N`

Importing the package registers the bootsteps and signal handlers on the app.
"""

from worker.celery_app import bootsteps as _bootsteps  # noqa: F401  (registers the steps and signals)
from worker.celery_app.application import REDIS_OUTAGE_RETRY, app

__all__ = ["REDIS_OUTAGE_RETRY", "app"]
