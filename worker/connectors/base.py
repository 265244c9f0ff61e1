"""The connector interface: what a target (an ERP API) implements so that the pipeline can serve it.

The pipeline (validation, coalescing buffer, send tasks, results, retries, dead letters, duplicate index)
knows nothing about any ERP. A target plugs in with:

- its document models: schemas/targets.py (the pipeline validates with them, pure pydantic);
- a connector class here, registered in worker/connectors/__init__.py, that says
  - how documents are grouped: `max_batch_docs` (SoftOne takes arrays; Fortnox and the invoice service one
    document per request);
  - how a request is authenticated (inside `post_documents`/`look_up`: API keys, OAuth tokens...);
  - how a batch is sent and its answer read: `post_documents` returns the created ids in the batch's order,
    or raises the worker's error types (worker/errors.py): TransientError (send again later), AmbiguousError
    (may have been created: reconcile), BatchRejected (an array rejected part-way), PermanentError (never
    created: the documents fail with the ERP's reason);
  - whether and how the ERP can be asked which documents of a batch exist: `can_look_up` and `look_up`
    (after an ambiguous answer); without it such documents end `unknown` for an operator;
  - where a look-up finds documents by their content, the signature it matches on: `lookalike_keys` (no two
    documents with one signature are in flight for a tenant at once: worker/pipeline/lookalikes.py);
  - whether and how a document the ERP holds is updated (`can_update`, `update_document`: an "upsert" job's changed
    documents), and what to do instead where it is not (`no_update`).

Every request goes through `Connector.take_turn()` first: the tenant's in-flight cap is held by the send
task, this adds the tenant's rate limit (shared by every worker, worker/store/ratelimit.py). The dispatcher takes
a batch's first turn as it hands the batch out (worker/store/dispatch.py); the send says so with `turn_taken()`,
and that request takes no second one.

What a connector keeps in Redis (an access token shared by every worker, a refresh token, a Retry-After pause)
it keeps through `self.tokens` (worker/store/tokens.py), whose token calls raise StoreUnavailable when Redis
fails: a connector never touches Redis itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from schemas import DocumentKind
from worker.connectors.http import quieten_httpx_logging
from worker.connectors.reconcile import Settlement
from worker.errors import WaitingForRetryAfter
from worker.redaction import secrets_filter
from worker.settings import Settings, TenantConfig
from worker.store.client import RedisClient
from worker.store.ratelimit import RateLimiter
from worker.store.tokens import TokenStore

# The rate-limit turn the dispatcher took for the request about to be made, as the monotonic time it comes: one
# list per `turn_taken()` block, emptied by the first take_turn() in it.
_TURN_TAKEN: ContextVar[list[float] | None] = ContextVar("erpsync_turn_taken", default=None)


@contextmanager
def turn_taken(turn_in: float | None) -> Iterator[None]:
    """Within this block, the first `take_turn()` of any connector finds its turn taken already (by the dispatcher,
    as it handed the batch out; `turn_in` seconds from now, None: no turn was taken) and waits for it; later ones
    take their own."""
    token = _TURN_TAKEN.set([] if turn_in is None else [time.monotonic() + turn_in])
    try:
        yield
    finally:
        _TURN_TAKEN.reset(token)


@dataclass(frozen=True, slots=True)
class Created:
    """What the ERP answered for one created document: its id (Key) and, when it has one, its number."""

    key: int | str
    number: str | None = None


@dataclass(frozen=True, slots=True)
class LookupRequest:
    """A batch whose outcome is open, as a connector needs it to ask the ERP what it holds."""

    kind: DocumentKind
    docs: Sequence[dict[str, Any]]
    external_ids: Sequence[str]
    rejected: bool  # the ERP rejected the array part-way (SoftOne), rather than giving no usable answer
    high_water: int  # the highest Key we knew when the batch was planned (SoftOne's content matching)
    known_keys: Callable[[Iterable[int]], set[int]]  # which of these Keys we recorded for other documents
    request_id: str


class Connector:
    """Base of every connector: one tenant's account at one ERP. Subclasses set `target` and implement
    `post_documents`; those that can look documents up override `can_look_up` and `look_up`."""

    target: ClassVar[str]
    # How long one worker may hold the token renewal lock (others wait as long for it).
    token_lock_seconds: ClassVar[float] = 30

    def __init__(
        self,
        tenant: TenantConfig,
        settings: Settings,
        client: httpx.Client,
        cache: RedisClient,
        limiter: RateLimiter | None = None,
    ) -> None:
        """`cache`: the Redis client of the tenant's shared session state and, unless `limiter` is given, of its
        rate limit."""
        self.tenant = tenant
        self.settings = settings
        self.client = client
        self.tokens = TokenStore(cache, settings.key_prefix, tenant.name)
        self.limiter = limiter or RateLimiter(cache, settings.key_prefix, settings.rate_limit_margin_seconds)
        self.base_url = tenant.base_url.rstrip("/")
        quieten_httpx_logging()
        self.setup()

    def setup(self) -> None:
        """Called at the end of __init__: what a subclass prepares from its tenant's configuration (secrets
        for the log filter, ids). The base needs nothing more."""

    def shared_token(self, renew: Callable[[], str]) -> str:
        """The tenant's token, shared by every worker through Redis; when there is none, `renew` gets one and
        stores it, under a lock: one worker renews, the others wait for it and then find the new token.
        StoreUnavailable (worker/store/errors.py) when Redis fails or the lock cannot be had."""
        cached = self.tokens.get()
        if cached:
            secrets_filter().add_secret(cached)
            return cached
        with self.tokens.renewal(self.token_lock_seconds):
            cached = self.tokens.get()
            if cached:
                secrets_filter().add_secret(cached)
                return cached
            return renew()

    def credential(self, field: str, file_value: str) -> str:
        """The credential `field` to use: Redis's (an operator's `erpsync tenants reauth`, or a renewal's successor)
        while the tenants file still holds `file_value`, the value it superseded; else the file's (the precedence in
        worker/store/tokens.py). Masked in logs from here on. StoreUnavailable when Redis cannot say which."""
        value = self.tokens.credential(field, file_value) or file_value
        secrets_filter().add_secret(value)
        return value

    def invalidate(self, token: str) -> None:
        """Forget `token` unless another worker has already replaced it."""
        self.tokens.forget(token)

    @classmethod
    def max_batch_docs(cls, settings: Settings, kind: DocumentKind) -> int:
        """Documents per request; 1 for APIs that take one document at a time."""
        return 1

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str) -> list[Created]:
        """Send a batch (`body`: the JSON array of its documents, as stored) and return one Created per
        document, in order; raise the worker's error types otherwise."""
        raise NotImplementedError

    def can_look_up(self, kind: DocumentKind) -> bool:
        return False

    @classmethod
    def can_update(cls, kind: DocumentKind) -> bool:
        """Whether the ERP's API updates a document of `kind` it holds (an "upsert" job's changed documents)."""
        return False

    @classmethod
    def no_update(cls, kind: DocumentKind) -> str:
        """Why a changed document of `kind` cannot be sent as an update, and what to do instead."""
        return (
            f"{cls.target}'s API has no update of {kind.value} documents: correct it in the ERP (an invoice: credit "
            "it there) and submit the correction under a new id"
        )

    def update_document(self, kind: DocumentKind, key: str, body: bytes, request_id: str) -> Created:
        """Send a one-document batch body as the new content of the document `key` the ERP holds; its Created."""
        raise NotImplementedError(f"{self.target} cannot update {kind.value} documents")

    @classmethod
    def can_verify(cls, kind: DocumentKind, action: str) -> bool:
        """Whether `act` can tell that `action` on a `kind` document was done already (then a lost answer is a reason
        to try again; otherwise the action's outcome is `unknown`)."""
        return False

    def act(self, kind: DocumentKind, key: str, action: str, external_id: str, request_id: str) -> Created:
        """Do `action` on the document `key` (id `external_id`) unless it shows done already: the Created of the
        document it made (a credit invoice, an invoice from an order), else of the document acted on."""
        raise NotImplementedError(f"{self.target} takes no actions on {kind.value} documents")

    def lookalike_keys(self, kind: DocumentKind, docs: Sequence[dict[str, Any]]) -> list[str] | None:
        """Per document, the name of the content signature `look_up` tells documents apart by, when it finds them by
        their content rather than by an id of ours (None: it does not)."""
        return None

    def look_up(self, request: LookupRequest) -> Settlement:
        """Which documents of a batch the ERP holds (Settlement: found, rejected, doubtful, to resend)."""
        raise NotImplementedError(f"{self.target} cannot look up {request.kind.value} documents")

    def take_turn(self) -> None:
        """Wait for the tenant's rate limit to allow one more request, or raise WaitingForRetryAfter
        (nothing was sent: the send task gives its turn back without counting an attempt)."""
        rate = self.tenant.rate(self.settings)
        if rate is None:
            return
        prepaid = _TURN_TAKEN.get()
        if prepaid:
            wait = prepaid.pop() - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # at most worker/store/dispatch.py's TURN_AHEAD_S
            return
        wait = self.limiter.acquire(self.target, self.tenant.name, rate, timeout=self.settings.rate_limit_wait_seconds)
        if wait:
            raise WaitingForRetryAfter(
                f"tenant {self.tenant.name!r} is at its rate limit ({rate} requests/seconds); nothing sent",
                retry_after=wait,
            )


def single_document(body: bytes) -> bytes:
    """The one document of a one-document batch body (`[{...}]` -> `{...}`), without parsing it."""
    text = body.strip()
    if not (text.startswith(b"[") and text.endswith(b"]")):
        raise ValueError("a batch body is a JSON array")
    return text[1:-1].strip()
