"""A sandbox that keeps its state across restarts, as a real ERP does: ``--state FILE``, an SQLite file.

What is kept: the ledger (every document of the three APIs, as it is now, with its history, and for Fortnox
documents the account, whether the number still finds it, and an invoice's DeliveryState), the counters that
never go back (Keys, numbers, row ids, invoice-service ids, Fortnox token labels), SoftOne tokens, Fortnox access
and refresh tokens (spent ones too: a refresh token used before a restart stays used), and the webhook receivers
(their settings and what they received). What is not: stats, fault rules and random faults, latency, the rate
limit's windows, the Retry-After records - they describe this process, and start afresh with it.

Committed before the answer: :class:`SaveBeforeAnswer` (ASGI, right around the routes) writes what a request
changed (sandbox.journal) in one transaction when the route starts its answer - before any fault of
sandbox.middleware throws that answer away -, as a real ERP commits and then answers. WAL mode with
``synchronous=NORMAL``: a committed transaction survives the sandbox process being killed (``kill -9``, a process
manager stopping everything), which is what the sandbox stands in for; it does not wait for the disk (an fsync per
request costs 1-7 ms on a busy machine, in the one thread that serves every request), so a power loss or an
operating-system crash may lose the last transactions.
``POST /_sandbox/reset`` empties the ledger in the file too. The file is locked while a sandbox has it open (a
second sandbox on the same file is refused), and holds tokens: it is created readable by its owner only.

A file of another program, or of another layout of this one, is refused with a one-line StateFileError.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.fortnox_state import AccessToken, RefreshToken
from sandbox.journal import FORTNOX_REFRESH_TOKENS, FORTNOX_TOKENS, SOFTONE_TOKENS, Changes
from sandbox.state import LedgerEntry, SandboxState, Token
from sandbox.webhooks import Receiver, Receivers

log = logging.getLogger("sandbox")

APPLICATION_ID = 0x45525053  # "ERPS": PRAGMA application_id of a sandbox state file
LAYOUT = 1  # PRAGMA user_version: the layout below; another one is refused, never guessed at
WEBHOOKS_PREFIX = "/_sandbox/webhooks/"

SCHEMA = """
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY, target TEXT NOT NULL, kind TEXT NOT NULL, key NOT NULL, company_id INTEGER NOT NULL,
    number TEXT NOT NULL, customer_nr TEXT, customer_name TEXT NOT NULL, invoice_date TEXT, external_id TEXT,
    created_at REAL NOT NULL, request_id TEXT NOT NULL, document TEXT NOT NULL, history TEXT NOT NULL,
    fortnox_client TEXT, indexed INTEGER NOT NULL, delivery_state TEXT
);
CREATE TABLE sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE softone_tokens (
    value TEXT PRIMARY KEY, company_api_key TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE fortnox_tokens (
    value TEXT PRIMARY KEY, client_id TEXT NOT NULL, label TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE fortnox_refresh_tokens (value TEXT PRIMARY KEY, client_id TEXT NOT NULL, spent INTEGER NOT NULL);
CREATE TABLE webhook_receivers (name TEXT PRIMARY KEY, receiver TEXT NOT NULL);
"""
LEDGER_COLUMNS = (
    "seq, target, kind, key, company_id, number, customer_nr, customer_name, invoice_date, external_id, "
    "created_at, request_id, document, history, fortnox_client, indexed, delivery_state"
)
# How each token table's rows are written: the columns after `value`, and a row's values from the object.
TOKEN_COLUMNS: dict[str, tuple[str, ...]] = {
    SOFTONE_TOKENS: ("company_api_key", "issued_at", "expires_at"),
    FORTNOX_TOKENS: ("client_id", "label", "expires_at"),
    FORTNOX_REFRESH_TOKENS: ("client_id", "spent"),
}


class StateFileError(ValueError):
    """A state file that cannot be used; the message is one line, naming the file."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StateFile:
    """One open state file (see the module docstring): :meth:`open` it, :meth:`load` a fresh state from it, then
    :meth:`save` the state's journal after every request; :meth:`close` on the way out."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.db = connection

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> StateFile:
        """Open (or create) the state file at ``path`` and lock it; StateFileError with a one-line reason if it
        cannot be: a directory, a missing directory, not SQLite, another program's or another layout's file,
        or in use by another sandbox."""
        path = Path(path)
        if path.is_dir():
            raise StateFileError(f"sandbox state {path}: is a directory, expected a file")
        if not path.parent.is_dir():
            raise StateFileError(f"sandbox state {path}: directory {path.parent} does not exist")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # created for its owner only: it holds tokens
            os.close(fd)
        except OSError as exc:
            raise StateFileError(f"sandbox state {path}: cannot open it ({exc.strerror or exc})") from exc
        db = sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
        try:
            cls._prepare(db, path)
        except sqlite3.Error as exc:
            db.close()
            if "locked" in str(exc):
                raise StateFileError(f"sandbox state {path}: in use by another sandbox process") from exc
            raise StateFileError(f"sandbox state {path}: not a sandbox state file ({exc})") from exc
        except ValueError:
            db.close()
            raise
        return cls(path, db)

    @staticmethod
    def _prepare(db: sqlite3.Connection, path: Path) -> None:
        """Lock the file, check that it is a state file of this layout (or empty: then make it one)."""
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # held from the first write until closed
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, see the module docstring
        db.execute("BEGIN IMMEDIATE")  # takes the lock now: a second sandbox on this file stops here
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            layout = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if application_id == 0 and layout == 0 and tables == 0:
                for statement in filter(str.strip, SCHEMA.split(";")):  # not executescript: it would commit
                    db.execute(statement)
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={LAYOUT}")
            elif application_id != APPLICATION_ID:
                raise StateFileError(f"sandbox state {path}: an SQLite file of another program, not a sandbox state")
            elif layout != LAYOUT:
                raise StateFileError(
                    f"sandbox state {path}: written in layout {layout}, this sandbox reads layout {LAYOUT}; "
                    "move it away to start with an empty state"
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- loading -------------------------------------------------------------------------------
    def load(self, state: SandboxState, receivers: Receivers) -> int:
        """Put what the file holds into a fresh ``state`` and ``receivers``; the number of documents in the
        ledger. StateFileError if the file is damaged."""
        try:
            return self._load(state, receivers)
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"sandbox state {self.path}: cannot be read ({exc})") from exc

    def _load(self, state: SandboxState, receivers: Receivers) -> int:
        db = self.db
        state.sequences.values.update(db.execute("SELECT name, next FROM sequences"))
        for value, company_api_key, issued_at, expires_at in db.execute("SELECT * FROM softone_tokens"):
            state.tokens[value] = Token(value, company_api_key, issued_at, expires_at)
        fortnox = state.fortnox
        for value, client_id, label, expires_at in db.execute("SELECT * FROM fortnox_tokens"):
            fortnox.tokens[value] = AccessToken(value, client_id, label, expires_at)
        for value, client_id, spent in db.execute("SELECT * FROM fortnox_refresh_tokens"):
            fortnox.restore_refresh_token(value, RefreshToken(client_id, bool(spent)))
        fields = {f.name for f in dataclasses.fields(Receiver)}
        for name, raw in db.execute("SELECT name, receiver FROM webhook_receivers"):
            receivers.by_name[name] = Receiver(**{k: v for k, v in json.loads(raw).items() if k in fields})
        rows = db.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq")
        for seq, target, kind, key, company_id, number, customer_nr, customer_name, invoice_date, external_id, \
                created_at, request_id, document, history, client_id, indexed, delivery_state in rows:  # fmt: skip
            entry = LedgerEntry(
                key=key, kind=kind, company_id=company_id, number=number, customer_nr=customer_nr,
                customer_name=customer_name, invoice_date=invoice_date, external_id=external_id,
                created_at=created_at, request_id=request_id, document=json.loads(document), target=target,
                history=json.loads(history), seq=seq, journal=state.journal,
            )  # fmt: skip
            state.ledger.append(entry)
            if client_id is not None:
                fortnox.restore(client_id, entry, bool(indexed), delivery_state)
        state.next_seq = (state.ledger[-1].seq + 1) if state.ledger else 1
        state.journal.enabled = True
        return len(state.ledger)

    # -- saving --------------------------------------------------------------------------------
    def save(self, state: SandboxState, receiver: tuple[str, Receiver | None] | None = None) -> None:
        """Write what changed since the last save (and the webhook receiver ``(name, receiver or None if
        deleted)``) in one transaction; nothing when nothing changed. If the write fails, the changes stay noted
        for the next save (the request that made them gets the error, an HTTP 500)."""
        if not state.journal.pending() and receiver is None:
            return
        changes = state.journal.changes  # no `await` until they are taken: nothing else can change meanwhile
        db = self.db
        db.execute("BEGIN")
        try:
            self._write(state, changes)
            if receiver is not None:
                name, kept = receiver
                if kept is None:
                    db.execute("DELETE FROM webhook_receivers WHERE name = ?", (name,))
                else:
                    raw = _dumps(dataclasses.asdict(kept))
                    db.execute("INSERT OR REPLACE INTO webhook_receivers VALUES (?, ?)", (name, raw))
        except BaseException:
            db.execute("ROLLBACK")
            log.exception("sandbox state %s: cannot save", self.path)
            raise
        db.execute("COMMIT")
        state.journal.take()

    def _write(self, state: SandboxState, changes: Changes) -> None:
        db = self.db
        if changes.ledger_cleared:
            db.execute("DELETE FROM ledger")
        if changes.entries:
            marks = ", ".join("?" * len(LEDGER_COLUMNS.split(", ")))
            rows = (self._ledger_row(state, e) for e in changes.entries.values())
            db.executemany(f"INSERT OR REPLACE INTO ledger ({LEDGER_COLUMNS}) VALUES ({marks})", rows)
        for table in changes.cleared:
            db.execute(f"DELETE FROM {table}")  # a name of TOKEN_COLUMNS, not input
        for (table, value), token in changes.rows.items():
            if token is None:
                db.execute(f"DELETE FROM {table} WHERE value = ?", (value,))
            else:
                columns = TOKEN_COLUMNS[table]
                values = [value, *(getattr(token, c) for c in columns)]
                marks = ", ".join("?" * len(values))
                db.execute(f"INSERT OR REPLACE INTO {table} (value, {', '.join(columns)}) VALUES ({marks})", values)
        if changes.sequences:
            moved = ((name, state.sequences.values[name]) for name in changes.sequences)
            db.executemany("INSERT OR REPLACE INTO sequences VALUES (?, ?)", moved)

    @staticmethod
    def _ledger_row(state: SandboxState, e: LedgerEntry) -> tuple[Any, ...]:
        client_id = state.fortnox.client_of(e)
        indexed = state.fortnox.indexed(e)
        delivery = state.fortnox.delivery_states.get((client_id, e.number)) if client_id and indexed else None
        return (
            e.seq, e.target, e.kind, e.key, e.company_id, e.number, e.customer_nr, e.customer_name, e.invoice_date,
            e.external_id, e.created_at, e.request_id, _dumps(e.document), _dumps(e.history), client_id,
            int(indexed), delivery,
        )  # fmt: skip

    def counts(self) -> dict[str, int]:
        """Rows per table (for the start-up log line and tests)."""
        tables: Iterable[str] = ("ledger", "sequences", *TOKEN_COLUMNS, "webhook_receivers")
        return {t: self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def receiver_named(path: str) -> str | None:
    """The receiver a ``/_sandbox/webhooks/{name}[/config]`` request is about (None for any other path)."""
    if not path.startswith(WEBHOOKS_PREFIX):
        return None
    name = path[len(WEBHOOKS_PREFIX) :].split("/", 1)[0]
    return name or None


class SaveBeforeAnswer:
    """ASGI middleware around the routes: saves what a request changed when its answer starts (before a fault
    can throw that answer away), and whatever is left when the request is over."""

    def __init__(self, app: ASGIApp, state: SandboxState, receivers: Receivers, state_file: StateFile) -> None:
        self.app = app
        self.state = state
        self.receivers = receivers
        self.state_file = state_file

    def _save(self, scope: Scope) -> None:
        name = receiver_named(scope["path"]) if scope["method"] != "GET" else None  # a GET changes no receiver
        receiver = (name, self.receivers.by_name.get(name)) if name is not None else None
        self.state_file.save(self.state, receiver)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def saving_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._save(scope)
            await send(message)

        try:
            await self.app(scope, receive, saving_send)
        finally:
            self._save(scope)
