"""Look-alikes: before a batch's request goes out, hold the content signature of each of its documents.

    send ──▶ [hold signatures: all free → send | some held elsewhere → send the rest, split those off | all → wait]

Where the ERP is asked what it saved by content (SoftOne's invoice Filter: worker/connectors/reconcile.py), two
documents with one signature in flight at once could be taken for each other. So no two are: a batch holds its
signatures (worker/store/lookalikes.py) until it ends, and a document whose signature another open batch holds
goes on in a batch of its own (`<batch>.l<attempt>`), which waits until it can hold all of its signatures: split
once, never again, so that look-alikes travel together rather than in ever smaller pieces. Look-alikes within one
batch are fine: SoftOne saves an array in order and the look-up matches in that order.

What it costs: look-alikes of one tenant are sent one batch after the other, so a day of many identical receipts
takes more (and smaller) requests than one of all different ones: the chaos test prints the count
(tests/integration/test_chaos.py).
"""

from __future__ import annotations

import json
import logging
import random

from schemas import DocumentKind
from worker.errors import ConfigurationError, LeaseLost
from worker.observability.logs import fields
from worker.pipeline import runtime
from worker.pipeline.queue import Enqueue
from worker.pipeline.record import StoredBatch, carry_on
from worker.pipeline.retry import not_sent
from worker.pipeline.tickets import place
from worker.store.results import ResultsStore

__all__ = ["LOOKALIKE_WAIT_S", "hold"]

log = logging.getLogger(__name__)

#: How long a batch whose every signature is held elsewhere waits before it looks again (plus up to as much jitter):
#: about one request's time, the usual life of a hold.
LOOKALIKE_WAIT_S = 0.5


def hold(enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, attempt: int) -> StoredBatch:
    """The batch to send now: `batch` itself, or the part of it whose signatures it could hold (the rest placed as a
    batch of its own). RetryLater when it could hold none; LeaseLost when the attempt no longer holds the batch."""
    try:
        connector = runtime.connector(batch.tenant)
    except ConfigurationError:
        return batch  # a tenant no longer configured: the send fails its documents
    signatures = connector.lookalike_keys(DocumentKind(batch.kind), batch.read)
    if signatures is None:
        return batch
    split_off = bool(batch.data.get("lookalikes_of"))  # split once already: it goes whole or waits
    held = runtime.lookalikes().hold(batch.tenant, batch.kind, batch.id, attempt, signatures, whole=split_off)
    if not held.ours:
        raise LeaseLost(batch.id)
    if not held.busy:
        return batch
    keep = [i for i, signature in enumerate(signatures) if signature not in held.busy]
    if not keep or split_off:
        countdown = LOOKALIKE_WAIT_S * (1 + random.random())
        log.debug("every document of the batch has a look-alike in flight; waiting %.2fs", countdown)
        raise not_sent(store, batch, "send", countdown, "lookalike", waits_for="lookalike")
    later = [i for i in range(len(signatures)) if i not in set(keep)]
    rest = carry_on(batch, later, f"{batch.id}.l{attempt}")
    rest.meta["lookalikes_of"] = batch.id
    data = {
        "members": json.dumps([batch.members[i] for i in keep]),
        "external_ids": json.dumps([batch.external_ids[i] for i in keep], ensure_ascii=False),
        "body": json.dumps([batch.docs[i] for i in keep], ensure_ascii=False, separators=(",", ":")),
        "size": str(len(keep)),
    }
    if not store.split_batch(batch.id, attempt, data, rest):
        raise LeaseLost(batch.id)
    place(enqueue, batch.tenant, [rest.batch_id])
    log.info("look-alikes in flight: split off", extra=fields(kept=len(keep), split_off=len(later)))
    kept = StoredBatch(batch.id, batch.data | data, batch.started)
    kept.attempt = attempt
    return kept
