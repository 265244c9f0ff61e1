"""The one exception hierarchy of erpsync: what went wrong is a type, not a string.

    ErpSyncError
    ├── ConfigurationError          our own setup is wrong (unknown tenant, bad tenants file)
    ├── UserError                   a command's input or options are wrong: one line and an exit code
    │   └── SubmitError             a file or job cannot be submitted as a whole (also a ValueError)
    │       ├── SourceError         a source broke part-way (its line and reason): what was read before stays
    │       └── JobIncomplete       a job was stored `incomplete`: its source broke after some documents
    ├── RetryLater                  a pipeline step's work must come back later (its task adapter maps it
    │                               to a Celery retry); carries the countdown and what Flower may show
    ├── LeaseLost                   this attempt no longer holds its batch: another worker took it over
    ├── StoreUnavailable            Redis failed a call whose caller carries on without it (the ERP token
    │                               cache, worker/store/tokens.py)
    ├── IndexLost                   Redis has lost the duplicate index (its epoch is gone): nothing is
    │                               claimed until `erpsync archive restore-index` rebuilds it
    ├── ArchiveError                the archive's schema is not the code's, or it refused a write
    │   └── ArchiveUnavailable      the archive's database cannot be reached: wait, the outbox keeps
    │                               what was not written (worker/archive/)
    ├── TransientError              nothing was created; the same request may succeed later → retry
    │   ├── ConnectFailed           refused/reset before the request was sent, connect timeout
    │   ├── RateLimited             429, with the server's Retry-After
    │   │   └── WaitingForRetryAfter    not sent: the tenant's pause after a 429 is still running
    │   ├── ServiceUnavailable      502, 503, 504
    │   └── UpdateAnswerLost        an update's answer was lost: it may have been applied, and applying the
    │                               same whole content again leaves the same document → send it again
    ├── AmbiguousError              the body was sent but no answer came: the ERP may have created
    │                               the documents → never resend blindly, reconcile first
    └── PermanentError              the same request will fail again → no retry
        ├── RequestRejected         400, 403, 404, 422 and other 4xx
        ├── AuthenticationFailed    401 even with a freshly issued token
        │   └── AuthorizationRefused    the ERP refuses the tenant's authorisation (a spent Fortnox refresh
        │                               token, refused client credentials or API keys, a 401 after renewal):
        │                               nothing was created; the tenant is paused until `erpsync tenants
        │                               reauth` (or resume), its documents wait and keep their attempts
        └── BatchRejected           200 with `Success: false` (SoftOne saved the documents before the
                                    rejected one: the batch is partly committed)

Messages never carry credentials: every message is scrubbed of secret URL parameters and known secrets.
"""

from __future__ import annotations

from worker.redaction import secrets_filter


class ErpSyncError(Exception):
    """Base of every error the worker raises on purpose.

    Its message is scrubbed when the error is made: an ERP's error page may quote the request URL with its
    keys and token (ASP.NET's 404 does), and from here messages go to results, logs and dead letters.
    """

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(secrets_filter().scrub(str(message)), *args)


class ConfigurationError(ErpSyncError):
    """Our configuration is missing or wrong; fix the settings, not the documents."""


class UserError(ErpSyncError):
    """A problem the user can fix; the command line prints it as one line, no traceback."""


class SubmitError(UserError, ValueError):
    """A file or a job that cannot be submitted as a whole (unreadable, unknown tenant, no documents)."""


class SourceError(SubmitError):
    """A source of documents that broke part-way (a bad JSONL line, broken CSV quoting, a read error): `line` is the
    file's line where it broke (None when unknown), `reason` what is wrong there, without the path. The documents read
    before it are whole: `submit()` keeps them in an `incomplete` job (worker/producer/submit.py)."""

    def __init__(self, message: str, *, reason: str, line: int | None = None) -> None:
        super().__init__(message)
        self.reason = secrets_filter().scrub(reason)
        self.line = line


class JobIncomplete(SubmitError):
    """A job stored with status `incomplete`: its source broke (`line`, None when unknown, and `reason`) after
    `stored` documents, which the job keeps and processes; `job_id` is the job's."""

    def __init__(self, job_id: str, stored: int, reason: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        documents = "1 document" if stored == 1 else f"{stored} documents"
        super().__init__(f"{where}{reason}; the job keeps the {documents} read before it")
        self.job_id, self.stored, self.reason, self.line = job_id, stored, reason, line


class RetryLater(ErpSyncError):
    """The step's work comes back after `countdown` seconds, as a new message of the same task.

    `args` replaces the message's arguments when given (e.g. only the documents still waiting); `argsrepr` and
    `kwargsrepr` are what Flower and the log lines show of it: ids and counts only. `reason`, what the work waits
    for (a word: outage, retry, pause, reconcile, lease), is what operators are shown of a batch the dispatcher
    holds back (worker/store/dispatch.py)."""

    def __init__(
        self,
        countdown: float,
        *,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
        args: list[object] | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(f"comes back in {countdown:.3f}s")
        self.countdown = countdown
        self.argsrepr = argsrepr
        self.kwargsrepr = kwargsrepr
        self.args_ = args
        self.reason = reason


class LeaseLost(ErpSyncError):
    """This attempt no longer holds its batch (it outlived its lease and another worker took it over)."""


class StoreUnavailable(ErpSyncError):
    """Redis could not do what a token-cache call asked. `kind` is the name of Redis's error (`ConnectionError`,
    `TimeoutError`, `LockError`, `LockNotOwnedError`...); the error itself is the `__cause__`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.kind = type(error).__name__


class IndexLost(ErpSyncError):
    """Redis no longer holds the duplicate index's epoch: claiming now could create documents a second time."""

    def __init__(self) -> None:
        super().__init__(
            "Redis has lost the duplicate index (its epoch key is missing): nothing is sent until it is rebuilt "
            "from the archive with `erpsync archive restore-index`"
        )


class ArchiveError(ErpSyncError):
    """The archive's database cannot be used: its schema is not the one this code writes, or it refused a write."""


class ArchiveUnavailable(ArchiveError):
    """The archive's database cannot be reached (down, refusing connections): worth waiting out."""


class TransientError(ErpSyncError):
    """Nothing was created and retrying later may succeed."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class UpdateAnswerLost(TransientError):
    """An update (a whole document's new content) got no usable answer: sending it again is harmless."""


class ConnectFailed(TransientError):
    """The request never reached the ERP (refused, reset before sending, connect timeout)."""


class RateLimited(TransientError):
    """429 Too Many Requests."""


class WaitingForRetryAfter(RateLimited):
    """Not sent at all: an earlier 429 for this tenant asked for a pause that is still running."""


class ServiceUnavailable(TransientError):
    """502/503/504: a gateway or the ERP said it could not take the request."""


class AmbiguousError(ErpSyncError):
    """The request was sent and no usable answer came back: its effect is unknown."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PermanentError(ErpSyncError):
    """The ERP refused the request; sending it again unchanged will fail again."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RequestRejected(PermanentError):
    """A 4xx answer other than 401/429: nothing was created."""


class AuthenticationFailed(PermanentError):
    """401 with a token issued moments ago: the tenant's keys are wrong or revoked."""


class AuthorizationRefused(AuthenticationFailed):
    """The ERP refuses the tenant's authorisation itself (worker/store/tenants.py): its token endpoint refused the
    refresh token or the client credentials, or its API keys, or a call answered 401 with a token issued moments
    ago. No document can go until an operator authorises again, so the pipeline pauses the tenant instead of failing
    its documents (worker/pipeline/retry.py, `refused`). `reason` is the short form operators see as what the tenant
    waits for ("paused: <reason>")."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message, status=status)
        self.reason = secrets_filter().scrub(reason) if reason else "authorisation refused"


class BatchRejected(PermanentError):
    """`Success: false` in the operation result: the documents before the rejected one are saved."""

    def __init__(self, message: str, *, error_number: int = 0) -> None:
        super().__init__(message, status=200)
        self.error_number = error_number
