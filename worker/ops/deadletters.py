"""Dead letters: documents the pipeline could not create, kept with everything an operator needs, and how each one's
loop closes.

Entries are written when a batch's end is recorded (worker/pipeline/record.py; worker/store/results.py stores
them) for ERP rejections, exhausted retries and unknown outcomes. Replaying submits the document again as a new
job, so it goes through validation and the duplicate index: replaying twice never creates twice. For an
`unknown` entry, replay is the operator's statement that the document is not in the ERP: the old claim on its
ExternalId is released first (only if it is still that old claim; a created or newer claim is never touched).

A dead letter's state (DeadLetterState):

- `open`: nobody has acted on it. `erpsync dead list` and `replay --all` take these.
- `replayed`: submitted again as job `replay_job`; `replay_outcome` is what that job made of the document:
  `pending` until it settles, then its status. A replay that fails again leaves a dead letter of its own
  (`<replay_job>#0`, open), which carries the document on: the replayed one is closed.
- `resolved`: the document was created, by the replay or by any later submission of the same ExternalId for the
  same tenant and kind; `resolved_key` (and `resolved_number`) is its Key, `resolved_by` the job that created it.

Resolution is recorded when the creation is, not derived when listing: the script that writes a created document's
duplicate-index entry (worker/store/lua/mark_created.lua) resolves that document's open dead letters in the same
transaction. The index itself could answer "is it created?" when listing, but its entries are rewritten by updates,
restored from the archive and expire after ERPSYNC_DEDUP_TTL_SECONDS while dead letters never do, and it does not
say whether the document was created after the dead letter or by which job; a state written once, atomically with
the creation, keeps that answer for as long as the dead letter is kept, at the cost of one HGET per created document
while any dead letter is open (none otherwise). Only a replay's outcome that is not a creation (`duplicate`,
`changed`, `failed`, `unknown`: no index entry was written) is read from the replay job's record when listing, while
that job is kept; a `duplicate` or `changed` replay shows its dead letter resolved with the Key it found.
"""

from __future__ import annotations

from typing import Any

from worker.producer.submit import submit
from worker.store.records import DeadLetterState, DocStatus, now_iso
from worker.store.results import ResultsStore

#: The state fields an entry of `entries` carries besides the stored entry's own.
STATE_FIELDS = (
    "state",
    "replay_job",
    "replayed_at",
    "replay_outcome",
    "resolved_key",
    "resolved_number",
    "resolved_by",
    "resolved_at",
)
#: A replay's outcomes that mean the document is in the ERP: its dead letter is resolved.
_IN_ERP = (DocStatus.CREATED, DocStatus.DUPLICATE, DocStatus.UPDATED, DocStatus.CHANGED)
#: Newest dead letters looked at to find the newest open ones for `erpsync status`.
_NEWEST_SCAN = 200


def replay(store: ResultsStore, entry: dict[str, Any]) -> str:
    """Submit a dead letter's document again; returns the new job id, recorded on the entry (`replayed`)."""
    if entry["status"] == "unknown":
        store.release(entry["tenant"], entry["kind"], entry["external_id"], entry["id"])
    job_id = submit(
        [entry["document"]],
        kind=entry["kind"],
        tenant=entry["tenant"],
        source=f"replay of {entry['id']}",
        settings=store.s,
    )
    store.record_replay(entry["id"], job_id)
    stored = store.dead_letter(entry["id"])  # the entry as stored: `entry` may carry its state fields (`entries`)
    if stored is not None:
        stored.setdefault("replays", []).append({"job_id": job_id, "at": now_iso()})
        store.update_dead_letter(stored)
    return job_id


def with_state(entry: dict[str, Any], state: dict[str, str | None]) -> dict[str, Any]:
    """A stored entry with its state's fields (STATE_FIELDS; an entry replayed before states were kept: by its
    `replays`)."""
    merged = dict.fromkeys(STATE_FIELDS) | {k: (v or None) for k, v in state.items() if k in STATE_FIELDS}
    replays = entry.get("replays") or []
    if not state and replays:
        merged |= {"state": DeadLetterState.REPLAYED.value, "replay_job": replays[-1].get("job_id"),
                   "replayed_at": replays[-1].get("at"), "replay_outcome": "pending"}  # fmt: skip
    merged["state"] = merged["state"] or DeadLetterState.OPEN.value
    return entry | merged


def _settle_replays(store: ResultsStore, entries: list[dict[str, Any]]) -> None:
    """Fill in the outcome of replays still `pending` from their jobs' records (one round trip): a document in the
    ERP resolves the entry with its Key; a job gone says `expired`."""
    waiting = [e for e in entries if e["replay_outcome"] == "pending" and e["replay_job"]]
    for entry, record in zip(waiting, store.first_records([e["replay_job"] for e in waiting]), strict=True):
        if record is None:
            entry["replay_outcome"] = "expired"
        elif record.status != DocStatus.PENDING:
            entry["replay_outcome"] = record.status
            if record.status in _IN_ERP and entry["state"] != DeadLetterState.RESOLVED:
                entry.update(state=DeadLetterState.RESOLVED.value, resolved_by=entry["replay_job"],
                             resolved_key=None if record.key is None else str(record.key),
                             resolved_number=record.number, resolved_at=record.updated_at)  # fmt: skip


def entries(store: ResultsStore, *, include_closed: bool = False) -> list[dict[str, Any]]:
    """The dead letters, oldest first, each with its state (STATE_FIELDS): the open ones only, or every one."""
    found = store.dead_letters()
    states = store.dead_letter_states([e["id"] for e in found])
    merged = [with_state(e, s) for e, s in zip(found, states, strict=True)]
    _settle_replays(store, merged)
    return merged if include_closed else [e for e in merged if e["state"] == DeadLetterState.OPEN]


def lookup(store: ResultsStore, dead_id: str) -> dict[str, Any] | None:
    """One dead letter with its state (as `entries` gives it), None if there is none."""
    found = store.dead_letter(dead_id)
    if found is None:
        return None
    merged = with_state(found, store.dead_letter_states([dead_id])[0])
    _settle_replays(store, [merged])
    return merged


def newest_open(store: ResultsStore, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` open dead letters, newest first, among the newest few hundred (for `erpsync status`)."""
    ids = store.newest_dead_letter_ids(_NEWEST_SCAN if limit > 0 else 0)
    found = []
    for dead_id, state in zip(ids, store.dead_letter_states(ids), strict=True):
        if not state:
            found.append(dead_id)
            if len(found) == limit:
                break
    out = []
    for entry in store.dead_letters_by_id(found):
        if entry is not None and not entry.get("replays"):  # replayed before states were kept
            out.append(with_state(entry, {}))
    return out


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its document and attempts (for listings), with its state when it has one (`entries`)."""
    keys = ("id", "status", "tenant", "kind", "external_id", "job_id", "reason", "created_at")
    return (
        {k: entry.get(k) for k in keys}
        | {"replays": len(entry.get("replays", []))}
        | {k: entry[k] for k in STATE_FIELDS if k in entry}
    )
