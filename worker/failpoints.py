"""Named crash points: a TEST HOOK that lets fault tests stop a worker at an exact line, not by sleeping and hoping.

The code calls `failpoint("post.answered")` at the boundaries between the phases of a document's life (see
FAILPOINTS). Nothing happens unless the worker's environment names the point:

    ERPSYNC_FAILPOINTS="post.answered=kill"              SIGKILL the worker the first time the point is reached
    ERPSYNC_FAILPOINTS="post.answered=kill@3"            ... the 3rd time it is reached in this process
    ERPSYNC_FAILPOINTS="post.sending=kill-after=0.3s"    go on, and SIGKILL the worker 0.3 s later (a request in
                                                         flight when the worker dies)
    ERPSYNC_FAILPOINTS="batch.finished=sleep=2s"         hold the task here for 2 s (a graceful shutdown lands
                                                         in this phase)
    several at once: "intake.validated=kill@2,batch.finished=sleep=1s"

"kill" is `kill -9` of the whole worker: SIGKILL to the process group, i.e. the main process and its pool
children together (workers started by worker/devstack/stack.py have a session and group of their own), so nothing
gets to ack, flush or clean up: the crash is exactly at that line. Counts (`@N`) are per process: with a
prefork pool each child counts on its own. A point fires once, on the Nth time only.

The environment is read once, at import; with ERPSYNC_FAILPOINTS unset a failpoint is one dictionary lookup
on an empty dict. A malformed setting raises at import, so a scenario never runs with a hook silently off.
Never set it in production.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass

ENV = "ERPSYNC_FAILPOINTS"

#: Every point the code has, and the phase boundary it marks (tests/integration/test_crashes.py kills at each).
FAILPOINTS = {
    "intake.validated": "documents validated, claimed and their records written; not pushed to the buffer",
    "intake.batched": "documents that fill a whole batch stored as one by intake; its send not queued yet",
    "intake.buffered": "documents pushed into the coalescing buffer; no batch made of them yet",
    "flush.batched": "a batch stored from the buffer; its send not queued yet",
    "post.sending": "the batch is marked 'request sent'; the POST is about to go out",
    "post.answered": "the ERP answered with the Keys; nothing of it written yet",
    "batch.finished": "the batch's outcome written; its message not acknowledged yet",
}

_SPEC = re.compile(r"^(?P<name>[a-z][a-z0-9_.-]*)=(?P<action>kill|kill-after|sleep)(?:=(?P<seconds>[0-9.]+)s?)?"
                   r"(?:@(?P<nth>[1-9][0-9]*))?$")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Action:
    """What a failpoint does: `kill`, `kill-after` or `sleep` (those two with `seconds`), on the `nth` time."""

    kind: str
    seconds: float = 0.0
    nth: int = 1


def parse(text: str) -> dict[str, Action]:
    """`name=action[@N],...` → {name: Action}; ValueError names the part it cannot read."""
    points: dict[str, Action] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _SPEC.match(part)
        if match is None:
            raise ValueError(f"{ENV}: cannot read {part!r}; expected name=kill|kill-after=SECONDSs|sleep=SECONDSs[@N]")
        kind, seconds = match["action"], match["seconds"]
        if (kind == "kill") != (seconds is None):
            raise ValueError(f"{ENV}: {part!r}: 'kill' takes no time, 'kill-after' and 'sleep' need one (=0.5s)")
        points[match["name"]] = Action(kind, float(seconds or 0), int(match["nth"] or 1))
    return points


_points: dict[str, Action] = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def configure(text: str) -> None:
    """Replace the points (tests of this module; a worker reads its environment once, at import)."""
    global _points
    with _lock:
        _points = parse(text)
        _hits.clear()


def failpoint(name: str) -> None:
    """Do what ERPSYNC_FAILPOINTS says for `name` (nothing, unless it names it)."""
    action = _points.get(name)
    if action is None:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != action.nth:
            return
    # Straight to stderr (the worker's log file): a logging handler might not flush before the kill.
    os.write(2, f"failpoint {name}: {action.kind} {action.seconds:g}s (pid {os.getpid()})\n".encode())
    if action.kind == "kill":
        kill_worker()
    elif action.kind == "kill-after":
        timer = threading.Timer(action.seconds, kill_worker)
        timer.daemon = True
        timer.start()
    else:
        time.sleep(action.seconds)


def kill_worker() -> None:
    """SIGKILL this process's group: the worker's main process and every pool child, at once."""
    os.killpg(os.getpgrp(), signal.SIGKILL)
