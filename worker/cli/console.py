"""What every `erpsync` command shares: its exit codes, the user-error type and the two consoles.

Exit codes: 0 every document created (or already there: duplicate), or a listing shown; 1 some document not
created (or changed: created before with other content); 2 usage or configuration error (Redis unreachable,
unknown tenant or job, unreadable file, a bad option value); 3 timed out waiting; 4 the job is `incomplete`: its
file broke part-way (the line and reason on stderr and in the job), the documents read before it were kept and
processed; 141 the output was closed early (`erpsync jobs --json | head`: the reader stopped reading; 128 + SIGPIPE,
what the shell reports for `yes | head`), quietly. User errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import ipaddress

from rich.console import Console

from worker.errors import UserError

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_NOT_ALL_CREATED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "FINISHED",
    "JOB_STATUS_CHOICES",
    "UserError",
    "err",
    "is_loopback",
    "out",
    "plural",
]

EXIT_OK, EXIT_NOT_ALL_CREATED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
EXIT_INCOMPLETE = 4  # the job's source broke part-way: status `incomplete` (worker/store/records.py, JobStatus)
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: stdout's reader went away (main() in worker/cli/commands.py)
JOB_STATUS_CHOICES = ("receiving", "queued", "running", "succeeded", "partial", "failed", "incomplete", "rejected")
# Finished: what the results store finishes a job with, and `rejected` (a raw producer message refused whole).
FINISHED = ("succeeded", "partial", "failed", "incomplete", "rejected")


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 document`, `2 documents`, `0 documents`; `many` where adding an s is wrong (`entries`)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def is_loopback(address: str) -> bool:
    """Whether a server listening on `address` (`--host`, `--address`) is reached from this machine only: the
    servers warn otherwise (Flower, the console: put a TLS proxy in front)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Console(Console):
    """rich's Console, except that a closed stdout raises BrokenPipeError for `main()` to end the command with
    EXIT_OUTPUT_CLOSED, as it does for a plain print(), rather than rich's own SystemExit(1) (1 says a document
    was not created)."""

    def on_broken_pipe(self) -> None:
        del self._buffer[:]  # what could not be written is dropped; the console stays usable (main() in a test)
        raise BrokenPipeError(32, "Broken pipe")


out = _Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width
