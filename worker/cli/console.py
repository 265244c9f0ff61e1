"""What every `erpsync` command shares: its exit codes, the user-error type and the two consoles.

Exit codes: 0 every document created (or already there: duplicate), or a listing shown; 1 some document not
created (or changed: created before with other content); 2 usage or configuration error (Redis unreachable,
unknown tenant or job, unreadable file, a bad option value); 3 timed out waiting. User errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

from rich.console import Console

from worker.errors import UserError

__all__ = [
    "EXIT_NOT_ALL_CREATED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "FINISHED",
    "JOB_STATUS_CHOICES",
    "UserError",
    "err",
    "out",
]

EXIT_OK, EXIT_NOT_ALL_CREATED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
JOB_STATUS_CHOICES = ("receiving", "queued", "running", "succeeded", "partial", "failed", "rejected")
# Finished: what the results store finishes a job with, and `rejected` (a raw producer message refused whole).
FINISHED = ("succeeded", "partial", "failed", "rejected")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width
