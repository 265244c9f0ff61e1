"""erpsync worker: the Celery app, settings, connectors and the results store.

`celery -A worker worker` finds the app here.
"""

from worker.celery_app import app

__all__ = ["app"]
