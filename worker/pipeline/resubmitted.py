"""A re-submitted ExternalId whose document the ERP holds already: `duplicate` if it says the same, `changed` if not.

    intake / duplicates ──(the index says: created, with a fingerprint)──▶ [same content? duplicate : changed]

The duplicate index keeps, with each created document's Key, the fingerprint of what was sent (schemas/fingerprint.py:
independent of key order, number formatting and the id field). A re-submission with the same fingerprint is a
`duplicate` with the Key. One with another is `changed`: nothing is sent, the job does not succeed, and the record
names the fields that differ (paths, never values) in `errors`, found by comparing with the document created, which
the results store keeps as long as that job's results (ERPSYNC_RESULT_TTL_SECONDS); after that the record says the
content differs without naming the fields. An index entry written before fingerprints existed has none: its
re-submissions stay `duplicate`, as they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from schemas import DocumentKind, Target
from schemas.fingerprint import changed_paths, fingerprint
from schemas.targets import document_type
from schemas.validation import DocumentError, validate_document_json
from worker.pipeline import runtime
from worker.store.records import Claim, DocStatus, Record

__all__ = ["MAX_PATHS_NAMED", "content_fingerprint", "outcome"]

#: A changed record's `errors` name at most this many fields (its `error` says how many differ).
MAX_PATHS_NAMED = 50


def content_fingerprint(target: str, kind: str, wire: Mapping[str, Any]) -> str:
    """The fingerprint of a document as it is sent (its wire form, read by schemas.fingerprint.parse), without its
    id field."""
    return fingerprint(wire, document_type(target, kind).id_field)


def outcome(claim: Claim, external_id: str, target: str, kind: str, wire: Mapping[str, Any]) -> Record:
    """The record of a document whose ExternalId the index says was created (`claim`): `duplicate` or `changed`."""
    same = claim.fingerprint is None or claim.fingerprint == content_fingerprint(target, kind, wire)
    if same:
        return Record(external_id, DocStatus.DUPLICATE, key=claim.key, number=claim.number)
    paths = _changed_paths(claim.owner, target, kind, wire)
    created = f"ExternalId {external_id!r} was created before (Key {claim.key})"
    if paths is None:
        what = "with other content (the document created is no longer in the results store to name the fields)"
    else:
        shown = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
        fields = "1 field differs" if len(paths) == 1 else f"{len(paths)} fields differ"
        what = f"with other content: {fields} ({shown})"
    return Record(
        external_id,
        DocStatus.CHANGED,
        key=claim.key,
        number=claim.number,
        error=f"{created} {what}; this version was not sent and the ERP keeps the earlier one. Correct the document "
        "in the ERP (an invoice: credit it and create a new one), or give the new version an ExternalId of its own",
        errors=[{"field": path, "reason": "differs from the document created"} for path in (paths or [])][
            :MAX_PATHS_NAMED
        ],
    )


def _changed_paths(owner: str, target: str, kind: str, wire: Mapping[str, Any]) -> list[str] | None:
    """The paths that differ from the document created (`owner`: its job#position), or None if it is gone."""
    job_id, _, position = owner.partition("#")
    if not position.isdigit():
        return None
    stored = runtime.store().documents(job_id, int(position), int(position) + 1)
    if not stored:
        return None
    earlier = validate_document_json(DocumentKind(kind), stored[0], Target(target))
    if isinstance(earlier, DocumentError):  # the rules changed since (a new release): compare what was submitted
        return changed_paths(json.loads(stored[0]), wire, document_type(target, kind).id_field)
    return changed_paths(json.loads(earlier.to_wire_json()), wire, document_type(target, kind).id_field)
