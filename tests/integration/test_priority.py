"""`celery worker --nice N` (the intake worker's Procfile line): a real worker and its pool children run at nice N."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from worker.celery_app.priority import autogroups_enabled
from worker.devstack.stack import LocalStack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values and autogroups: Linux"),
]


def test_a_worker_started_with_nice_runs_its_pool_at_that_priority(stack: LocalStack) -> None:
    # A deployment of its own (queue and keys): this worker must take none of the suite's messages, and its recovery
    # on start must not re-queue the suite's work.
    own = f"erpsync-nice-{uuid.uuid4().hex[:6]}"
    env = {"ERPSYNC_QUEUE": own, "ERPSYNC_KEY_PREFIX": own}
    proc = stack.start_worker("nice", 2, env, pool="prefork", queues="intake", nice=5)
    try:
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        for pid in [proc.pid, *map(int, children)]:
            assert os.getpriority(os.PRIO_PROCESS, pid) == 5
        log = (stack.workdir / "worker-nice.log").read_text()
        assert "CPU priority lowered: process nice 5" in log
        if autogroups_enabled():  # it leads its session: its autogroup too
            assert Path(f"/proc/{proc.pid}/autogroup").read_text().split()[-1] == "5"
    finally:
        stack.kill_worker(proc)
