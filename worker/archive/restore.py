"""Rebuild the duplicate index in Redis from the archive's copy (`erpsync archive restore-index`).

Every entry the archive holds for the deployment goes back with what is left of its time to live (the index keeps
an entry ERPSYNC_DEDUP_TTL_SECONDS from its last write), SoftOne's Keys rejoin the known Keys reconciliation
excludes, and the epoch is written last: intake claims again only once the whole index is back.

What the archive cannot give back: entries recorded in the last moments before Redis lost its data and not yet
archived (the outbox stream was lost with them; `erpsync status` shows the archive's lag, normally under a
second). A SoftOne invoice among them is still found by reconciliation's look-up; for the table of what
each fault costs, see docs/operations.md, "When Redis loses data".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from worker.archive import schema
from worker.errors import ArchiveError
from worker.settings import Settings
from worker.store.outbox import Outbox

__all__ = ["restore_index"]


def restore_index(outbox: Outbox, engine: Engine, settings: Settings) -> int:
    """Write the archive's index back to Redis, then a new epoch; how many entries were written."""
    epoch = uuid.uuid4().hex
    try:
        return outbox.restore_index(_entries(engine, settings), epoch)
    except SQLAlchemyError as exc:
        raise ArchiveError(f"cannot read the archive's index: {type(exc).__name__}") from None


def _entries(engine: Engine, settings: Settings) -> Iterator[tuple[str, str, str, str, int | None, float]]:
    t = schema.index
    now = time.time()
    query = (
        select(t.c.tenant, t.c.kind, t.c.external_id, t.c.value, t.c.erp_key, t.c.recorded_at)
        .where(t.c.deployment == settings.key_prefix)
        .execution_options(yield_per=5000)
    )
    with engine.connect() as connection:
        for tenant, kind, external_id, value, erp_key, recorded_at in connection.execute(query):
            at = recorded_at if recorded_at.tzinfo else recorded_at.replace(tzinfo=UTC)
            left = settings.dedup_ttl_seconds - (now - at.timestamp())
            if left > 0:
                yield tenant, kind, external_id, value, erp_key, left
