"""erpsync worker: the Celery app, settings, connectors and the results store.

`celery -A worker worker` finds the app here. It is created on first access, so that importing a part of
this package (the CLI, the producer) does not read settings before it can report their errors clearly.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.celery_app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
