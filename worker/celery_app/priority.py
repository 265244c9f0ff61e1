"""A worker's CPU priority (`celery worker --nice N`): the intake worker yields the CPU to sends and the ERP.

Intake is throughput work: validating and batching a big end-of-day file keeps every core busy for seconds. A send
holds one of its tenant's in-flight slots while its thread waits for a core to read the ERP's answer and record it,
so while intake runs at the same priority the slots sit idle, sends fall behind and the ERP's capacity is wasted:
in scenario A on 2 cores, requests took ~70 ms instead of ~50 ms while intake ran, and half the batches were still
waiting when intake ended (docs/architecture.md, "Concurrency"). At a lower priority, intake takes the CPU the
sends leave.

`lower_priority(n)` sets the process's nice value to at least `n`; the prefork pool's children, forked after it,
inherit it. On Linux with autogroup scheduling (kernel.sched_autogroup_enabled), the scheduler shares the CPU
between sessions first, and a nice value only counts against processes of the same session. A worker that leads
its own session (started with `setsid`, as the bench and the test stack start theirs) therefore also sets its
session's autogroup nice, which concerns its session alone. A worker sharing its session (a shell, honcho) leaves
the autogroup alone: changing it would lower every process of that session, the sender included. Under systemd,
give the intake unit a lower CPUWeight= instead (each unit is a cgroup, weighed against the others).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["AUTOGROUP", "AUTOGROUP_ENABLED", "autogroups_enabled", "lower_priority"]

log = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def lower_priority(nice: int) -> list[str]:
    """Lower this process's CPU priority, and its own session's autogroup's, to nice `nice` (never raise either).
    Returns what was set, for the log line (empty when nothing needed setting); a platform or permission that
    refuses is logged, never fatal."""
    done: list[str] = []
    if nice <= 0:
        return done
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            done.append(f"process nice {nice}")
    except (AttributeError, OSError) as exc:  # AttributeError: no getpriority (Windows)
        log.warning("could not lower the CPU priority to nice %d: %s", nice, exc)
        return done
    if _leads_own_autogroup():
        try:
            if _autogroup_nice() < nice:
                AUTOGROUP.write_text(str(nice))
                done.append(f"session autogroup nice {nice}")
        except (OSError, ValueError) as exc:
            log.warning("could not set the session's autogroup nice to %d: %s", nice, exc)
    return done


def _autogroup_nice() -> int:
    """The nice value of this process's autogroup: /proc/self/autogroup reads "/autogroup-42 nice 5"."""
    return int(AUTOGROUP.read_text().split()[-1])


def autogroups_enabled() -> bool:
    """The kernel schedules with autogroups (per session) on this machine."""
    try:
        return AUTOGROUP_ENABLED.read_text().strip() == "1"
    except OSError:
        return False


def _leads_own_autogroup() -> bool:
    """Autogroup scheduling is on and this process leads its session (so the autogroup is its own)."""
    return autogroups_enabled() and AUTOGROUP.exists() and os.getsid(0) == os.getpid()
