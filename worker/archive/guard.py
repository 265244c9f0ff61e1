"""Has Redis lost the duplicate index? Decided by the epoch in Redis against what the archive knows.

    the epoch is in Redis                         → READY: the index is the one the archive mirrors
    no epoch, and the archive has no index rows   → a new deployment: the epoch is written now, READY
    no epoch, and the archive knows created docs  → LOST: Redis lost its data (a failover without the last
                                                    writes, a FLUSHALL, a lost volume). Intake claims nothing
                                                    (worker/store/results.py, claim_all) until the index is
                                                    rebuilt (worker/archive/restore.py); with
                                                    ERPSYNC_ARCHIVE_AUTO_RESTORE it is rebuilt here at once

Run by every worker at start and then every few seconds (worker/celery_app/bootsteps.py), and by the archiver.
"""

from __future__ import annotations

import logging
import uuid
from enum import StrEnum

from sqlalchemy import Engine, exists, select
from sqlalchemy.exc import SQLAlchemyError

from worker.archive import schema
from worker.archive.restore import restore_index
from worker.errors import ArchiveError
from worker.settings import Settings
from worker.store.outbox import Outbox

__all__ = ["IndexState", "check_index"]

log = logging.getLogger(__name__)


class IndexState(StrEnum):
    READY = "ready"
    STARTED = "started"  # a new deployment: the epoch was written just now
    LOST = "lost"
    RESTORED = "restored"  # lost, and rebuilt at once (ERPSYNC_ARCHIVE_AUTO_RESTORE)


def _archive_knows_documents(engine: Engine, deployment: str) -> bool:
    try:
        with engine.connect() as connection:
            query = select(exists().where(schema.index.c.deployment == deployment))
            return bool(connection.execute(query).scalar())
    except SQLAlchemyError as exc:
        raise ArchiveError(f"cannot read the archive's index: {type(exc).__name__}") from None


def check_index(outbox: Outbox, engine: Engine, settings: Settings) -> IndexState:
    """Decide (and act on) the index's state; see the module's table."""
    if outbox.epoch() is not None:
        return IndexState.READY
    if not _archive_knows_documents(engine, settings.key_prefix):
        if outbox.start_epoch(uuid.uuid4().hex):
            log.info("duplicate index started (a new deployment: the archive knows no document of it)")
        return IndexState.STARTED
    if settings.archive_auto_restore:
        restored = restore_index(outbox, engine, settings)
        log.warning("Redis had lost the duplicate index: rebuilt from the archive (%d entries)", restored)
        return IndexState.RESTORED
    reason = "Redis has lost the duplicate index: run `erpsync archive restore-index`"
    if "lost" not in outbox.state():
        log.error("%s; intake claims nothing until then", reason)
    outbox.mark_lost(reason)
    return IndexState.LOST
