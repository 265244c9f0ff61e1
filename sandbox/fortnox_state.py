"""In-memory Fortnox state: OAuth tokens, the per-token rate limit, document numbers and look-up indexes.

Like sandbox.state, everything here is synchronous: the sandbox is one asyncio process, so a
method without ``await`` is atomic relative to other requests.

* Access tokens live ``fortnox_token_ttl_seconds``. Each gets a LABEL (``<client_id>#<n>``, in
  issue order) under which the stats show it: token values are secrets and never appear in a
  response or a log line.
* Refresh tokens are single-use. A client's configured first refresh token is valid once per
  sandbox process (a reset does not revive it), every use hands out a successor, and a spent
  one is remembered so that its reuse can be told apart from a token that never existed.
* The rate limit is a sliding log per access token: a request is admitted when fewer than
  ``limit`` ADMITTED requests of that token arrived in the last ``window_seconds``. Refused
  requests do not take a slot (a client that keeps retrying gets through as soon as the window
  has room again), but they do count in the "seen" log, from which the stats report the most
  requests a token ever sent within one window - more than the limit means it over-sent.
* Document numbers are per account and kind. Numbers the sandbox assigns come from a counter
  that never goes back (a reset keeps it, like SoftOne's Keys); numbers a client chooses (an
  ArticleNumber, or a DocumentNumber) only have to be free among the documents currently in
  the ledger, so a run after a reset can create its articles again. A deleted article frees its
  number the same way.
* Row ids (the rows' ``RowId``) come from one counter of the sandbox that never goes back.
* An invoice an order's ``createinvoice`` made remembers the order's DeliveryState here (the
  invoice schema has no such field; ``warehouseready`` needs it to be "delivery").
* With a state file (sandbox.persistence), access and refresh tokens (spent ones too) and the
  counters are noted in the journal as they change, and saved: a restarted sandbox knows them, as
  Fortnox would. The configured first refresh token is then valid once per state file, not per
  process. The rate limit's windows and the tokens' use counts are the process's own.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.config import FortnoxAccount, SandboxConfig
from sandbox.journal import FORTNOX_REFRESH_TOKENS, FORTNOX_TOKENS, Journal, Sequences

if TYPE_CHECKING:
    from sandbox.state import Kind, LedgerEntry


@dataclass(frozen=True)
class RefreshToken:
    """A refresh token's owner, and whether it was used up (kept to tell reuse from a token never issued)."""

    client_id: str
    spent: bool


@dataclass(frozen=True)
class AccessToken:
    """An issued Fortnox access token; ``value`` is a secret, ``label`` names it in the stats."""

    value: str
    client_id: str
    label: str
    expires_at: float


@dataclass
class _Window:
    admitted: deque[float]
    seen: deque[float]


class RateLimiter:
    """At most ``limit`` admitted requests per key in any sliding ``window_seconds``."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._windows: dict[str, _Window] = {}

    def arrive(self, key: str, now: float) -> tuple[bool, int]:
        """Register one request of ``key`` arriving at ``now``: (admitted, requests seen in the window
        ending now, this one and refused ones included)."""
        window = self._windows.setdefault(key, _Window(deque(), deque()))
        start = now - self.window_seconds
        for log in (window.admitted, window.seen):
            while log and log[0] <= start:
                log.popleft()
        window.seen.append(now)
        admitted = len(window.admitted) < self.limit
        if admitted:
            window.admitted.append(now)
        return admitted, len(window.seen)

    def forget(self, key: str) -> None:
        self._windows.pop(key, None)

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "window_seconds": self.window_seconds}


class RefreshTokenError(Exception):
    """A refresh token that cannot be used; ``reused`` when it was valid once and has been spent."""

    def __init__(self, description: str, reused: bool = False) -> None:
        super().__init__(description)
        self.description = description
        self.reused = reused


class FortnoxState:
    """Tokens, rate limiter, numbering and indexes of every configured Fortnox account.

    ``sequences`` and ``journal``: the sandbox's (sandbox.state), so that they are saved with it; a state of
    its own otherwise."""

    def __init__(
        self,
        config: SandboxConfig,
        clock: Callable[[], float],
        sequences: Sequences | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.journal = journal or Journal()
        # "fortnox.token_label", "fortnox.row_id", "fortnox.number:<client_id>:<kind>"
        self.sequences = sequences or Sequences(self.journal)
        self.tokens: dict[str, AccessToken] = {}
        self.token_uses: dict[str, int] = {}
        # refresh token -> client_id, while it can still be used; spent ones are kept to recognise reuse
        self.refresh_tokens: dict[str, str] = {
            a.refresh_token: a.client_id for a in config.fortnox_accounts.values() if a.refresh_token
        }
        self.spent_refresh_tokens: dict[str, str] = {}
        self.limiter = RateLimiter(config.fortnox_rate_limit, config.fortnox_rate_window_seconds)
        self._by_number: dict[tuple[str, str], dict[str, LedgerEntry]] = {}
        self._by_reference: dict[tuple[str, str], dict[str, list[LedgerEntry]]] = {}
        self._clients: dict[int, str] = {}  # ledger seq -> the client_id of the account the document is in
        # (client_id, invoice number) -> the DeliveryState of the order the invoice was made from
        self.delivery_states: dict[tuple[str, str], str] = {}

    # -- OAuth ---------------------------------------------------------------------------------
    def client(self, client_id: str, client_secret: str) -> FortnoxAccount | None:
        """The account of these client credentials (secrets compared in constant time)."""
        account = self.config.fortnox_accounts.get(client_id)
        if account is None or not secrets.compare_digest(account.client_secret, client_secret):
            return None
        return account

    def issue_access_token(self, account: FortnoxAccount) -> AccessToken:
        token = AccessToken(
            value=secrets.token_urlsafe(32),
            client_id=account.client_id,
            label=f"{account.client_id}#{self.sequences.next('fortnox.token_label', 1)}",
            expires_at=self.clock() + self.config.fortnox_token_ttl_seconds,
        )
        self.tokens[token.value] = token
        self.journal.put(FORTNOX_TOKENS, token.value, token)
        return token

    def issue_refresh_token(self, account: FortnoxAccount) -> str:
        value = secrets.token_urlsafe(32)
        self.refresh_tokens[value] = account.client_id
        self.journal.put(FORTNOX_REFRESH_TOKENS, value, RefreshToken(account.client_id, spent=False))
        return value

    def spend_refresh_token(self, account: FortnoxAccount, value: str) -> None:
        """Use up ``value`` for ``account``; RefreshTokenError if it is spent, unknown or another client's."""
        if self.spent_refresh_tokens.get(value) == account.client_id:
            raise RefreshTokenError("Invalid refresh token: it has already been used", reused=True)
        if self.refresh_tokens.get(value) != account.client_id:
            raise RefreshTokenError("Invalid refresh token")
        del self.refresh_tokens[value]
        self.spent_refresh_tokens[value] = account.client_id
        self.journal.put(FORTNOX_REFRESH_TOKENS, value, RefreshToken(account.client_id, spent=True))

    def restore_refresh_token(self, value: str, token: RefreshToken) -> None:
        """A refresh token a state file kept (a spent one stays spent, even the configured first one)."""
        if token.spent:
            self.refresh_tokens.pop(value, None)
            self.spent_refresh_tokens[value] = token.client_id
        else:
            self.refresh_tokens[value] = token.client_id

    def valid_token(self, value: str) -> AccessToken | None:
        """The unexpired access token ``value`` (no side effects; an expired one is forgotten)."""
        token = self.tokens.get(value)
        if token is None:
            return None
        if self.clock() >= token.expires_at:
            self.expire_token(value)
            return None
        return token

    def authenticate(self, value: str) -> FortnoxAccount | None:
        """The account an API call with access token ``value`` acts for (counts the token's use)."""
        token = self.valid_token(value)
        if token is None:
            return None
        account = self.config.fortnox_accounts.get(token.client_id)
        if account is not None:
            self.token_uses[value] = self.token_uses.get(value, 0) + 1
        return account

    def token_used_before(self, value: str) -> bool:
        return self.token_uses.get(value, 0) > 0

    def expire_token(self, value: str) -> bool:
        token = self.tokens.pop(value, None)
        if token is not None:
            self.limiter.forget(token.label)
            self.journal.delete(FORTNOX_TOKENS, value)
        return token is not None

    def expire_tokens(self) -> int:
        """Forget every access token (refresh tokens stay valid: the client renews with one)."""
        n = len(self.tokens)
        for value in list(self.tokens):
            self.expire_token(value)
        return n

    # -- documents -----------------------------------------------------------------------------
    def number_taken(self, client_id: str, kind: Kind, number: str) -> bool:
        return number in self._by_number.get((client_id, kind), {})

    def next_number(self, client_id: str, kind: Kind) -> str:
        """The next free number the account would assign to a ``kind`` (1, 2, ...; never reused)."""
        while True:
            number = str(self.sequences.next(f"fortnox.number:{client_id}:{kind}", 1))
            if not self.number_taken(client_id, kind, number):
                return number

    def index(self, client_id: str, entry: LedgerEntry, reference: str | None) -> None:
        """Make a saved document findable by its number and its ExternalInvoiceReference1."""
        self._clients[entry.seq] = client_id
        self._by_number.setdefault((client_id, entry.kind), {})[entry.number] = entry
        if reference is not None:
            self._by_reference.setdefault((client_id, entry.kind), {}).setdefault(reference, []).append(entry)

    def reindex(self, client_id: str, entry: LedgerEntry, old: str | None, new: str | None) -> None:
        """Move an updated document from ExternalInvoiceReference1 ``old`` to ``new`` in the index."""
        if old == new:
            return
        references = self._by_reference.setdefault((client_id, entry.kind), {})
        if old is not None and entry in references.get(old, []):
            references[old].remove(entry)
            if not references[old]:
                del references[old]
        if new is not None:
            references.setdefault(new, []).append(entry)

    def forget(self, client_id: str, entry: LedgerEntry, reference: str | None) -> None:
        """Make a deleted document unfindable (its number becomes free again)."""
        by_number = self._by_number.get((client_id, entry.kind), {})
        if by_number.get(entry.number) is entry:
            del by_number[entry.number]
        self.reindex(client_id, entry, reference, None)

    def next_row_id(self) -> int:
        """A new ``RowId`` (never reused)."""
        return self.sequences.next("fortnox.row_id", 1)

    def find(self, client_id: str, kind: Kind, number: str) -> LedgerEntry | None:
        return self._by_number.get((client_id, kind), {}).get(number)

    def documents(self, client_id: str, kind: Kind, reference: str | None = None) -> Iterable[LedgerEntry]:
        """The account's documents of ``kind`` (only those with ExternalInvoiceReference1 ``reference``
        when it is given), in creation order."""
        if reference is not None:
            return list(self._by_reference.get((client_id, kind), {}).get(reference, []))
        return list(self._by_number.get((client_id, kind), {}).values())

    def client_of(self, entry: LedgerEntry) -> str | None:
        """The client_id of the account a document was saved in (None: not a Fortnox document)."""
        return self._clients.get(entry.seq)

    def indexed(self, entry: LedgerEntry) -> bool:
        """Whether the document can be found by its number (False once an article is deleted)."""
        client_id = self.client_of(entry)
        return client_id is not None and self.find(client_id, entry.kind, entry.number) is entry

    def restore(self, client_id: str, entry: LedgerEntry, indexed: bool, delivery_state: str | None) -> None:
        """A document a state file kept: indexed as when it was saved (invoices and orders by their
        ExternalInvoiceReference1 too), with the DeliveryState an invoice made from an order keeps."""
        self._clients[entry.seq] = client_id
        if not indexed:
            return
        self.index(client_id, entry, entry.external_id if entry.kind in ("customer_invoice", "order") else None)
        if delivery_state is not None:
            self.delivery_states[(client_id, entry.number)] = delivery_state

    def clear_documents(self) -> None:
        """Forget the indexes (the ledger was reset); the counters keep going."""
        self._by_number.clear()
        self._by_reference.clear()
        self._clients.clear()
        self.delivery_states.clear()
