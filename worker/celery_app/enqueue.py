"""The pipeline's `Enqueue` for a Celery deployment: publish a message by its task's name.

By name (`send_task`), so that neither the pipeline nor a producer imports the task modules: a producer process
needs the app's broker settings and routes, not the tasks. Sends go to the send queue by the app's routes.
"""

from __future__ import annotations

from worker.celery_app.application import app
from worker.pipeline.queue import Message

__all__ = ["publish"]


def publish(message: Message) -> None:
    """Publish `message` on the broker (what Flower and the logs show is its argsrepr and kwargsrepr)."""
    app.send_task(
        message.task.value,
        args=list(message.args),
        kwargs=message.kwargs,
        countdown=message.countdown,
        argsrepr=message.argsrepr,
        kwargsrepr=message.kwargsrepr,
        ignore_result=True,
    )
