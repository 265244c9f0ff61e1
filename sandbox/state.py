"""In-memory state of one sandbox process: tokens, the ledger of created documents, counters, stats.

The sandbox runs as ONE asyncio process, so a method without ``await`` is atomic relative to
other requests. :meth:`SandboxState.create` saves one document synchronously; the request
handler saves an array with a plain loop (no ``await`` between documents), so two concurrent
requests never interleave their documents.

The ledger holds the documents of every API, each marked with its ``target`` ("softone",
"fortnox", "invoiceservice"); Fortnox's tokens, rate limit and numbering live in
sandbox.fortnox_state (``SandboxState.fortnox``).

What a real ERP keeps across a restart - the ledger with each document's history, the counters of
Keys, numbers and ids (sandbox.journal.Sequences), SoftOne's and Fortnox's tokens - is noted in
``SandboxState.journal`` as it changes, for sandbox.persistence to save when a state file keeps it
(``--state FILE``). The rest is this process's: stats, fault rules and random faults, latency, the
Retry-After records, the rate limit's windows and how often each token was used.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sandbox.config import Company, SandboxConfig
from sandbox.faults import FaultStore
from sandbox.fortnox_state import FortnoxState
from sandbox.journal import SOFTONE_TOKENS, Journal, Sequences
from sandbox.random_faults import KINDS as RANDOM_FAULT_KINDS
from sandbox.random_faults import RandomFaults

MAX_EARLY_RETRY_SAMPLES = 100

Kind = Literal["customer_invoice", "order", "offer", "article"]
Target = Literal["softone", "fortnox", "invoiceservice"]
TARGETS: tuple[Target, ...] = ("softone", "fortnox", "invoiceservice")


def iso_utc(epoch_seconds: float, timespec: str = "milliseconds") -> str:
    """``2026-02-18T10:43:00.123Z`` for an epoch time."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True)
class Token:
    """An issued access token; ``value`` is a secret and must never be logged."""

    value: str
    company_api_key: str
    issued_at: float
    expires_at: float


@dataclass(eq=False)
class LedgerEntry:
    """One created document as it is now (as it was sent, unless a Fortnox update or action changed
    it), what the sandbox assigned to it, and its history.

    By target: ``key`` is SoftOne's integer Key, Fortnox's DocumentNumber (ArticleNumber for an
    article) or the invoice service's id ("I.<n>"); ``number`` the order/invoice number,
    DocumentNumber/ArticleNumber, or the invoice service's invoiceNumber; ``external_id`` the
    ExternalId, ExternalInvoiceReference1 (invoices, orders), ArticleNumber (articles), None
    (Fortnox offers), or invoiceNumber; ``company_id`` the SoftOne company, the Fortnox account's
    company id or the invoice-service client id. Articles have no customer and no date (None).

    Only Fortnox documents change after they were created (sandbox.fortnox_actions updates the
    fields above and appends to ``history``); an entry is equal only to itself.
    ``history`` lists what happened to the document, oldest first: ``{"at": <ISO time>,
    "operation": "create" | "update" | "credit" | "bookkeep" | ..., "request_id": ...}`` plus
    details (``"from"`` / ``"from_kind"`` on a document an action created, ``"to"`` on the
    document that created it). Without one given, it starts with the "create" event.

    ``seq`` is the entry's place in the ledger (given by :meth:`SandboxState.add`); ``journal`` the journal
    that :meth:`record` tells of a change (None: the state is not saved).
    """

    key: int | str
    kind: Kind
    company_id: int
    number: str
    customer_nr: str | None
    customer_name: str
    invoice_date: str | None  # the document's date (InvoiceDate, OrderDate, OfferDate, dates.invoiceDate)
    external_id: str | None
    created_at: float
    request_id: str  # SoftOne: the StringValue GUID of the request that created it; others: a GUID per request
    document: dict[str, Any]
    target: Target = "softone"
    history: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    journal: Journal | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.history:
            self.history.append({"at": iso_utc(self.created_at), "operation": "create", "request_id": self.request_id})

    def record(self, operation: str, at: float, request_id: str, **details: str) -> None:
        """Append one event to the history (``details``: e.g. ``to="7"``)."""
        self.history.append({"at": iso_utc(at), "operation": operation, "request_id": request_id, **details})
        if self.journal is not None:
            self.journal.entry(self)  # every change of a saved document ends with an event in its history

    def summary(self, full: bool = False, history: bool = False) -> dict[str, Any]:
        """The ``/_sandbox/ledger`` representation (``full``: with the document, ``history``: with the history)."""
        out: dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "target": self.target,
            "external_id": self.external_id,
            "customer_nr": self.customer_nr,
            "number": self.number,
            "company_id": self.company_id,
            "invoice_date": self.invoice_date,
            "created_at": iso_utc(self.created_at),
            "request_id": self.request_id,
        }
        if full:
            out["document"] = self.document
        if history:
            out["history"] = self.history
        return out


@dataclass
class FortnoxStats:
    """Fortnox counters. ``rate_limited`` counts the 429s of the sandbox's rate limit (the client sent
    too much); 429s injected by a fault rule or a random fault count in ``injected_429`` instead.
    ``max_in_window`` is the most requests one access token sent within any window (refused ones
    included): above the limit means a client over-sent. Tokens appear under their labels."""

    requests: int = 0  # Fortnox API requests (not the token endpoint), counted on arrival
    rate_limited: int = 0
    rate_limited_by_token: dict[str, int] = field(default_factory=dict)
    max_in_window: int = 0
    max_in_window_by_token: dict[str, int] = field(default_factory=dict)
    injected_429: int = 0
    tokens_issued: int = 0
    refresh_token_reuse: int = 0  # a spent refresh token presented again (400 invalid_grant)

    def saw(self, label: str, in_window: int) -> None:
        self.max_in_window = max(self.max_in_window, in_window)
        self.max_in_window_by_token[label] = max(self.max_in_window_by_token.get(label, 0), in_window)

    def limited(self, label: str) -> None:
        self.rate_limited += 1
        self.rate_limited_by_token[label] = self.rate_limited_by_token.get(label, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "rate_limited_by_token": dict(self.rate_limited_by_token),
            "max_in_window": self.max_in_window,
            "max_in_window_by_token": dict(self.max_in_window_by_token),
            "injected_429": self.injected_429,
            "tokens_issued": self.tokens_issued,
            "refresh_token_reuse": self.refresh_token_reuse,
        }


@dataclass
class Stats:
    """Request counters since start or the last reset (``tokens_issued``: SoftOne logins; Fortnox
    tokens count in ``fortnox``)."""

    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # "POST /path" -> status -> n
    documents_created: int = 0
    tokens_issued: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # random faults injected, by kind (every kind listed, 0 if none)
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RANDOM_FAULT_KINDS, 0))
    # requests that arrived before the Retry-After their company was given had passed
    early_retries: int = 0
    early_retry_samples: list[dict[str, Any]] = field(default_factory=list)  # the first ones, for diagnosis
    fortnox: FortnoxStats = field(default_factory=FortnoxStats)

    def count(self, route: str, status: str) -> None:
        per_status = self.requests.setdefault(route, {})
        per_status[status] = per_status.get(status, 0) + 1

    def count_fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def count_early_retry(self, sample: dict[str, Any]) -> None:
        self.early_retries += 1
        if len(self.early_retry_samples) < MAX_EARLY_RETRY_SAMPLES:
            self.early_retry_samples.append(sample)

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "documents_created": self.documents_created,
            "tokens_issued": self.tokens_issued,
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "faults": dict(self.faults),
            "early_retries": self.early_retries,
            "early_retry_samples": list(self.early_retry_samples),
            "fortnox": self.fortnox.as_json(),
        }


class SandboxState:
    """All mutable state. ``clock`` returns epoch seconds (injectable for token-expiry tests)."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.latency_ms = config.latency_ms
        self.latency_jitter_ms = config.latency_jitter_ms
        self.tokens: dict[str, Token] = {}
        self.ledger: list[LedgerEntry] = []
        self.stats = Stats()
        self.faults = FaultStore()
        self.random_faults = RandomFaults(config.faults)
        self._startup_faults = self.random_faults.profile  # with its seed chosen, re-armed by reset
        # "<caller>:<request digest>" -> epoch time before which a 429's Retry-After told that request to wait
        self.retry_not_before: dict[str, float] = {}
        self.token_uses: dict[str, int] = {}
        self.journal = Journal()  # enabled by sandbox.persistence when a state file keeps the state
        # Keys are global (all companies, both kinds) and survive reset: never reused. Numbers are per
        # company and also survive reset, so a number is never seen twice (self.sequences: "softone.key",
        # "softone.order_number:<company id>", "softone.invoice_number:<company id>").
        self.sequences = Sequences(self.journal)
        self.next_seq = 1  # the ledger place of the next document
        self.fortnox = FortnoxState(config, clock, self.sequences, self.journal)
        # The invoice service's ids ("I.<n>", rows "IR.<n>") continue from the spec's example response.
        self.invoice_service_ids = self.sequences.counter("invoiceservice.id", 111225694)
        self.invoice_service_row_ids = self.sequences.counter("invoiceservice.row_id", 321035638)

    # -- tokens ------------------------------------------------------------------------------
    def issue_token(self, company: Company) -> Token:
        now = self.clock()
        ttl = self.config.token_ttl_seconds
        token = Token(secrets.token_urlsafe(32), company.company_api_key, now, now + ttl)
        self.tokens[token.value] = token
        self.journal.put(SOFTONE_TOKENS, token.value, token)
        self.stats.tokens_issued += 1
        return token

    def token_used_before(self, value: str) -> bool:
        """True once a request has been authenticated with this token."""
        return self.token_uses.get(value, 0) > 0

    def token_valid(self, value: str, company: Company) -> bool:
        """True if ``value`` was issued for ``company`` and has not expired."""
        token = self.tokens.get(value)
        if token is None:
            return False
        if self.clock() >= token.expires_at:
            self.expire_token(value)
            return False
        if token.company_api_key != company.company_api_key:
            return False
        self.token_uses[value] = self.token_uses.get(value, 0) + 1
        return True

    def expire_token(self, value: str) -> bool:
        """Forget one token (the random ``token_expiry`` fault); True if it was known."""
        known = self.tokens.pop(value, None) is not None
        if known:
            self.journal.delete(SOFTONE_TOKENS, value)
        return known

    def expire_tokens(self) -> int:
        """Forget every issued token, SoftOne's and Fortnox's access tokens (clients then get 401 and
        must log in / renew again)."""
        n = len(self.tokens)
        self.tokens.clear()
        self.journal.clear(SOFTONE_TOKENS)
        return n + self.fortnox.expire_tokens()

    # -- Retry-After bookkeeping --------------------------------------------------------------
    # ``caller`` names who was told to wait: a SoftOne companyApiKey, "fortnox:<client_id>" or
    # "invoiceservice:<client_id>".
    def told_to_wait(self, caller: str, seconds: float, request_digest: str) -> None:
        """A 429 told this request (caller + route + body digest) to wait ``seconds`` from now."""
        until = self.clock() + seconds
        key = f"{caller}:{request_digest}"
        self.retry_not_before[key] = max(self.retry_not_before.get(key, until), until)

    def check_arrival(self, caller: str, company_id: int, arrived_at: float, route: str, request_digest: str) -> None:
        """Count the request as an early retry if the same request was told to wait beyond ``arrived_at``."""
        until = self.retry_not_before.get(f"{caller}:{request_digest}")
        if until is not None and arrived_at < until:
            self.stats.count_early_retry(
                {
                    "company_id": company_id,
                    "route": route,
                    "arrived_at": iso_utc(arrived_at),
                    "retry_after_until": iso_utc(until),
                    "early_by_ms": round((until - arrived_at) * 1000, 1),
                }
            )

    # -- documents ---------------------------------------------------------------------------
    def create(self, kind: Kind, company: Company, document: dict[str, Any], request_id: str) -> LedgerEntry:
        """Save one (already validated) document. Synchronous on purpose, see module docstring."""
        if kind == "order":
            numbering, first = "softone.order_number", self.config.first_order_number
        else:
            numbering, first = "softone.invoice_number", self.config.first_invoice_number
        customer_nr = document["CustomerNr"]
        external_id = document.get("ExternalId")
        entry = LedgerEntry(
            key=self.sequences.next("softone.key", self.config.first_key),
            kind=kind,
            company_id=company.company_id,
            number=str(self.sequences.next(f"{numbering}:{company.company_id}", first)),
            customer_nr=customer_nr,
            customer_name=self.config.customers.get(customer_nr, ""),
            invoice_date=document["InvoiceDate"],
            external_id=external_id if isinstance(external_id, str) else None,
            created_at=self.clock(),
            request_id=request_id,
            document=document,
        )
        self.add(entry)
        return entry

    def add(self, entry: LedgerEntry) -> None:
        """Record a saved document of any API in the ledger."""
        entry.seq, self.next_seq = self.next_seq, self.next_seq + 1
        self.ledger.append(entry)
        self.stats.documents_created += 1
        if self.journal.enabled:
            entry.journal = self.journal
            self.journal.entry(entry)

    def reset(self) -> None:
        """Clear ledger, stats, fault rules and Retry-After records; re-arm the start-up random
        faults (if any) with their seed, so a run after a reset sees the same faults again.
        Keys/numbers keep increasing, tokens stay valid (refresh tokens too), the rate limit's
        windows keep running."""
        self.ledger.clear()
        self.journal.clear_ledger()
        self.fortnox.clear_documents()
        in_flight = self.stats.in_flight
        self.stats = Stats(in_flight=in_flight, max_in_flight=in_flight)
        self.faults.clear()
        self.random_faults.configure(self._startup_faults)
        self.retry_not_before.clear()
