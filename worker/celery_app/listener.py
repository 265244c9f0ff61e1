"""The listener that takes raw producers' job messages off the submit list (worker/producer/submissions.py).

A thread in every worker that consumes the intake queue (a Celery bootstep, worker/celery_app/bootsteps.py)
takes the oldest message with one Lua call that moves it to a key of its own (`held`), and sends the task
`erpsync.accept_submission` with the message's id only. A worker that dies after the move leaves its id in the
held set, and a starting worker's listener sends its task again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.settings import Settings
from worker.store.client import RedisClient
from worker.store.errors import OUTAGE_ERRORS
from worker.store.submissions import SubmissionQueue

__all__ = ["Listener"]

log = logging.getLogger(__name__)


class Listener:
    """Takes messages off the submit list and sends a task for each, on a thread of its own.

    Polls every `submit_poll_seconds` while the list is empty and not at all while messages wait. Redis or
    broker errors (a restart, a failover) are logged and waited out with a growing pause; it never stops
    on its own. On start it first sends the tasks of messages held by a worker that died before it could.
    """

    def __init__(
        self,
        client: RedisClient,
        settings: Settings,
        send: Callable[[str, int], None],
        *,
        max_backoff: float = 30.0,
    ) -> None:
        self.queue = SubmissionQueue(client, settings)
        self.send = send
        self.poll = settings.submit_poll_seconds
        self.max_backoff = max_backoff
        self.stopping = threading.Event()
        self.unsent: list[tuple[str, int]] = []
        self.recovered = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="erpsync-submissions", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)

    terminate = stop

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                busy = self.step()
                failures = 0
            except Exception as exc:
                failures += 1
                pause = min(self.max_backoff, self.poll * 2**failures)
                log.warning(
                    "submission listener: %s (%s); trying again in %.1fs",
                    type(exc).__name__,
                    exc,
                    pause,
                    exc_info=failures == 1 and not isinstance(exc, OUTAGE_ERRORS),
                )
                self.stopping.wait(pause)
                continue
            if not busy:
                self.stopping.wait(self.poll)

    def step(self) -> bool:
        """One turn: send what is owed, take one message and send its task. True if one was taken."""
        if not self.recovered:
            held = self.queue.held()
            if held:
                log.info("submission listener: sending again the tasks of %d held message(s)", len(held))
            self.unsent.extend(held)
            self.recovered = True
        self._send_unsent()
        taken = self.queue.take()
        if taken is None:
            return False
        self.unsent.append(taken)  # until its task is sent; a failed send is tried again next turn
        self._send_unsent()
        return True

    def _send_unsent(self) -> None:
        while self.unsent:
            submission_id, size = self.unsent[0]
            self.send(submission_id, size)
            self.unsent.pop(0)
