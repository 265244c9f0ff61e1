"""worker/celery_app/priority.py: a worker lowers its CPU priority (and its session's autogroup), never raises it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.celery_app import priority

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values and autogroups: Linux")

# Run in a child process (a real one: the OS decides), which prints its nice value and its autogroup line.
PROBE = """
import os, sys
from worker.celery_app.priority import lower_priority
done = [what for value in sys.argv[1:] for what in lower_priority(int(value))]
group = open('/proc/self/autogroup').read().strip() if os.path.exists('/proc/self/autogroup') else '-'
print(os.getpriority(os.PRIO_PROCESS, 0), '|', group, '|', ', '.join(done))
"""


def probe(*nice: int, own_session: bool, start_at: int = 0) -> tuple[int, str, str]:
    """Start a process (at nice `start_at`) that lowers its priority to each of `nice` in turn."""
    done = subprocess.run(
        ["nice", "-n", str(start_at), sys.executable, "-c", PROBE, *map(str, nice)],
        cwd=ROOT, capture_output=True, text=True, check=True, start_new_session=own_session,
    )  # fmt: skip
    value, group, what = (part.strip() for part in done.stdout.split("|"))
    return int(value), group, what


def test_a_session_leader_lowers_its_process_and_its_autogroup() -> None:
    value, group, what = probe(4, own_session=True)
    assert value == 4
    if priority.autogroups_enabled():
        assert group.endswith("nice 4") and what == "process nice 4, session autogroup nice 4"
    else:
        assert what == "process nice 4"


def test_a_process_sharing_its_session_leaves_the_autogroup_alone() -> None:
    """Lowering a shared session's autogroup would lower every process of it (the sender next to it, the shell)."""
    before = priority.AUTOGROUP.read_text().strip() if priority.AUTOGROUP.exists() else "-"
    value, group, what = probe(4, own_session=False)
    assert (value, group, what) == (4, before, "process nice 4")


def test_a_priority_is_never_raised_and_zero_changes_nothing() -> None:
    value, group, what = probe(3, own_session=True, start_at=7)  # the process is lower already: left as it is
    assert value == 7 and what == ("session autogroup nice 3" if priority.autogroups_enabled() else "")
    value, group, what = probe(6, 3, own_session=True)  # the second call would raise both: it does nothing
    assert value == 6 and (group.endswith("nice 6") or not priority.autogroups_enabled())
    assert what == ("process nice 6, session autogroup nice 6" if priority.autogroups_enabled() else "process nice 6")
    assert priority.lower_priority(0) == []
