"""Failpoints (worker/failpoints.py): the test hook that crashes a worker at an exact line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import failpoints
from worker.devstack.stack import ROOT
from worker.failpoints import Action, failpoint, parse


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    failpoints.configure("")


def test_specs_are_parsed() -> None:
    assert parse("") == {}
    assert parse("post.answered=kill") == {"post.answered": Action("kill")}
    assert parse(" post.sending=kill-after=0.3s , batch.finished=sleep=2@3 ") == {
        "post.sending": Action("kill-after", 0.3),
        "batch.finished": Action("sleep", 2.0, 3),
    }


@pytest.mark.parametrize(
    "spec", ["post.answered", "post.answered=explode", "post.answered=kill=1s", "x=sleep", "x=kill@0", "x=sleep=a"]
)
def test_a_malformed_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="ERPSYNC_FAILPOINTS"):
        parse(spec)


def test_every_point_in_the_code_is_listed() -> None:
    """The names the code uses are the ones documented (a typo would make a scenario wait for nothing)."""
    used = set()
    for path in [*(ROOT / "tasks").glob("*.py"), *(ROOT / "worker").rglob("*.py")]:
        text = path.read_text()
        used |= {part.split('")')[0] for part in text.split('failpoint("')[1:]}
    assert used == set(failpoints.FAILPOINTS)


def test_nothing_happens_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(failpoints.time, "sleep", slept.append)
    failpoints.configure("post.answered=sleep=1s")
    failpoint("post.sending")
    assert slept == []
    failpoint("post.answered")
    assert slept == [1.0]
    failpoint("post.answered")  # once: only on the Nth time
    assert slept == [1.0]


def test_the_nth_time_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[bool] = []
    monkeypatch.setattr(failpoints, "kill_worker", lambda: killed.append(True))
    failpoints.configure("intake.buffered=kill@3")
    failpoint("intake.buffered")
    failpoint("intake.buffered")
    assert killed == []
    failpoint("intake.buffered")
    assert killed == [True]


def test_kill_after_lets_the_code_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    fired = threading.Event()
    monkeypatch.setattr(failpoints, "kill_worker", fired.set)
    failpoints.configure("post.sending=kill-after=0.2s")
    started = time.monotonic()
    failpoint("post.sending")
    assert time.monotonic() - started < 0.1 and not fired.is_set()
    assert fired.wait(5)


def test_kill_takes_the_whole_process_group() -> None:
    """`kill -9` of the group: the process and a child of it die at the failpoint, nothing after it runs."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "from worker.failpoints import failpoint\n"
        "failpoint('post.answered')\n"
        "print('after the failpoint', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {"ERPSYNC_FAILPOINTS": "post.answered=kill", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert b"failpoint post.answered: kill" in err and b"after the failpoint" not in out
    child = Path(f"/proc/{int(out.split()[0])}")
    deadline = time.monotonic() + 5
    while child.exists() and time.monotonic() < deadline:  # killed; reaped by init once orphaned
        if (child / "stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.05)
    assert not child.exists() or (child / "stat").read_text().split()[2] == "Z"


def test_a_malformed_environment_stops_the_import() -> None:
    env = {"ERPSYNC_FAILPOINTS": "post.answered=maybe", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", "import worker.failpoints"], env=env, capture_output=True, timeout=30)
    assert done.returncode != 0 and b"cannot read 'post.answered=maybe'" in done.stderr
