"""`python -m sandbox` as a real process on a free port, for tests of the command line and of real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from worker.devstack.stack import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class SandboxProcess:
    base: str
    output: str = ""  # what the process printed, once it has stopped


@contextmanager
def sandbox_process(*argv: str) -> Iterator[SandboxProcess]:
    """Start the sandbox with `argv` (plus --port), wait until healthy, stop it on exit and keep its output."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), *argv],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = SandboxProcess(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{running.base}/_sandbox/health").json() == {"ok": True}:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "sandbox did not start"
            time.sleep(0.1)
        yield running
    finally:
        proc.terminate()
        running.output, _ = proc.communicate(timeout=10)
