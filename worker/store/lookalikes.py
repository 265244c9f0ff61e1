"""Look-alike holds: no two documents with one content signature of a tenant in flight at once.

SoftOne's invoice Filter returns no ExternalId, so after a lost answer or a rejected array the documents of a batch
are found by their content (worker/connectors/reconcile.py). Two look-alikes (same customer, day and rows: a
coffee and a bun, twice) in flight at once in two batches could each be taken for the other. So the send step
holds every signature of its batch before the POST, and a batch that meets a signature another open batch holds
sends the rest and leaves those documents to a batch of their own (worker/pipeline/lookalikes.py).

    {p}:lookalike:{tenant}:{kind}   hash   signature -> id of the batch holding it

A hold lasts until its batch ends (lua/lookalike_release.lua, in the batch's last transaction): through its
retries, its reconciliation and a take-over by another sender. A hold whose batch is done or gone is free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from worker.settings import Settings
from worker.store.client import Arg, RedisClient, as_text
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = ["Hold", "LookalikeHolds"]


class Hold(NamedTuple):
    """What holding a batch's signatures found: whether the attempt still holds the batch, and the signatures other
    open batches hold (none of those was taken)."""

    ours: bool
    busy: frozenset[str]


class LookalikeHolds:
    """The tenant-wide holds on content signatures (see the module docstring)."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._hold = load_script(client, "lookalike_hold")

    def hold(
        self, tenant: str, kind: str, batch_id: str, attempt: int, signatures: Sequence[str], *, whole: bool = False
    ) -> Hold:
        """Take every signature of `signatures` that no other open batch holds (`whole`: none unless all are free),
        for the attempt `attempt` of `batch_id`; raise its high-water mark to the highest Key known now on its first
        hold."""
        distinct = list(dict.fromkeys(signatures))
        keys = [self.keys.lookalikes(tenant, kind), self.keys.batch(batch_id), self.keys.erp_keys(tenant, kind)]
        mode = "all" if whole else "some"
        args: list[Arg] = [self.keys.prefix, batch_id, attempt, self.s.result_ttl_seconds, mode, *distinct]
        raw = [as_text(v) for v in self._hold(keys=keys, args=args)]
        if raw[0] == "lost":
            return Hold(False, frozenset())
        return Hold(True, frozenset(raw[1:]))

    def holder(self, tenant: str, kind: str, signature: str) -> str | None:
        """The batch holding `signature` (tests and audits)."""
        value = self.r.hget(self.keys.lookalikes(tenant, kind), signature)
        return None if value is None else as_text(value)
