"""The submit list of raw-Redis producers and the messages taken from it (worker/producer/submissions.py).

Keys (prefix p; worker/store/keys.py):
    {p}:submit               list    job messages as producers pushed them (LPUSH); taken oldest first (RPOP)
    {p}:submit:held:{id}     string  a taken message, until its task has stored or rejected it
    {p}:submit:held          set     the ids of taken messages
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import redis

from worker.settings import Settings
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = ["HEAD_BYTES", "SubmissionQueue", "new_submission_id"]

#: A message's job id is looked for in this much of its start when the message cannot be parsed.
HEAD_BYTES = 64 * 1024
_READ_CHUNK = 1 << 20


def new_submission_id() -> str:
    """Sortable by time, unique without coordination: `20261120T231607-3f9c2a1b7d4e`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


class SubmissionQueue:
    """The submit list and the messages taken from it."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.keys = Keys(settings.key_prefix)
        self.key = self.keys.submit
        self.held_set = self.keys.submit_held_set
        self._take = load_script(client, "submit_take")

    def held_key(self, submission_id: str) -> str:
        return self.keys.submit_held(submission_id)

    def take(self) -> tuple[str, int] | None:
        """Move the oldest message to a held key of its own: (its id, its size in bytes), or None."""
        submission_id = new_submission_id()
        size = self._take(keys=[self.key, self.held_key(submission_id), self.held_set], args=[submission_id])
        return None if size is None else (submission_id, int(size))

    def held(self) -> list[tuple[str, int]]:
        """(id, size) of every message taken and not yet stored or rejected."""
        ids = sorted(self.r.smembers(self.held_set))
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for submission_id in ids:
            pipe.strlen(self.held_key(submission_id))
        return list(zip(ids, (int(n) for n in pipe.execute()), strict=True))

    def waiting(self) -> int:
        """Messages not taken yet."""
        return int(self.r.llen(self.key))

    def read(self, submission_id: str, max_bytes: int) -> tuple[bytes, int, str] | None:
        """(content, size, sha256) of a held message, None if it is gone. A message above `max_bytes` is
        read a megabyte at a time for its digest, and only its first bytes are kept."""
        key = self.held_key(submission_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(key)
        pipe.strlen(key)
        exists, size = pipe.execute()
        if not exists:
            return None
        size = int(size)
        if size <= max_bytes:
            raw = self.r.execute_command("GET", key, NEVER_DECODE=True)
            return None if raw is None else (raw, size, hashlib.sha256(raw).hexdigest())
        digest, head = hashlib.sha256(), b""
        for start in range(0, size, _READ_CHUNK):
            part = self.r.execute_command("GETRANGE", key, start, start + _READ_CHUNK - 1, NEVER_DECODE=True)
            if not part:
                return None  # gone while we read: another run of the task has settled it
            digest.update(part)
            head = head or part[:HEAD_BYTES]
        return head, size, digest.hexdigest()
