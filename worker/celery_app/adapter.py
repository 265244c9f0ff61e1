"""What every task adapter in tasks/ shares: a pipeline step's RetryLater becomes the task's Celery retry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from worker.errors import RetryLater

__all__ = ["retried"]


@contextmanager
def retried(task: Any) -> Iterator[None]:
    """Run a step for `task` (a bound Celery task): its RetryLater is raised as the task's retry, with the
    countdown, the arguments (the same unless the step names others) and what Flower may show."""
    try:
        yield
    except RetryLater as later:
        raise task.retry(
            args=later.args_, countdown=later.countdown, argsrepr=later.argsrepr, kwargsrepr=later.kwargsrepr
        ) from None
