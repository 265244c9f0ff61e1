"""The job message of the raw-Redis producer contract, and the JSON Schema file generated from it.

A producer in any language enqueues a job by pushing one JSON object onto a Redis list
(`LPUSH erpsync:submit '{...}'`; docs/reference.md, "Producing from any language"). `JobMessage` says exactly what
that object may hold. It is derived from `JobEnvelope`, field by field, so the two cannot drift apart:
a field added to the envelope fails here until it is described (or declared to be set by the worker). One field
is the message's own (`MESSAGE_ONLY`): `source_error`, how a producer says that its source broke part-way.

    python -m schemas.jsonschema            # rewrite schemas/job-envelope.schema.json from the model
    python -m schemas.jsonschema --check    # exit 1 if the committed file differs (a unit test does this)

Pure, like all of schemas/: no Redis, HTTP or Celery here.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from schemas.envelope import JobEnvelope, Target

SCHEMA_PATH = Path(__file__).with_name("job-envelope.schema.json")
SCHEMA_ID = "urn:erpsync:schema:job-envelope"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: JobEnvelope fields a message may not carry: the worker sets them when it accepts the message.
SET_BY_WORKER = frozenset({"submitted_at"})

#: What each field of a message means, as the schema tells it to producers.
DESCRIPTIONS: dict[str, str] = {
    "job_id": (
        "Your id for the job, unique over every tenant: its results are read back under "
        "`{prefix}:job:{job_id}` (`erpsync:job:<job_id>`). A message with an id already used is ignored "
        "(and logged in `{prefix}:rejected`), so re-sending a message is safe."
    ),
    "tenant": "A tenant configured in the worker (ERPSYNC_TENANTS_FILE); its ERP account and credentials are used.",
    "target": "The ERP the documents go to. Leave it out (or null) for the tenant's; another one is rejected.",
    "kind": "What the documents are; with the target, decides the endpoint and the document schema.",
    "documents": (
        "The documents, JSON objects in the target's wire format (SoftOne: ExternalId, CustomerNr, InvoiceRows, ...). "
        "Each is validated on its own later: a bad one fails alone, with its field path, and the others go through. "
        "A document whose id (ExternalId, ...) was created before is not sent again: its record is `duplicate` (with "
        "the Key) when its content is the same, `changed` (with the paths of the fields that differ, and the job does "
        "not succeed) when it is not."
    ),
    "source": "Free text for people: where the documents come from (a file name, a till, a system).",
    "priority": (
        "The job's lane: `interactive` (a few documents someone waits for) is taken before the tenant's `bulk` "
        "jobs (files) and never together with them. Leave it out (or null) to have it chosen by size: interactive "
        "up to ERPSYNC_INTERACTIVE_MAX_DOCUMENTS documents (100 by default), bulk above."
    ),
    "operation": (
        "`create` (the default): documents whose id was created before are not sent (`duplicate`, or `changed` "
        "if their content differs). `upsert`: a changed one is sent as an update of the document the ERP holds "
        "(record `updated`, with its Key), where the ERP takes updates (Fortnox invoices, orders, offers, "
        "articles); elsewhere, or where the ERP refuses (a booked or sent Fortnox invoice), it fails with what to do "
        "instead. `act`: each document is an action on a document created earlier, named by its id: "
        '{"ExternalId": "O-1", "Action": "createinvoice", "ResultExternalId": "INV-1"} (Fortnox: credit, bookkeep, '
        "externalprint, warehouseready, createinvoice, createorder; `kind` is the addressed document's)."
    ),
}

_unaccounted = set(JobEnvelope.model_fields) - SET_BY_WORKER - set(DESCRIPTIONS)
if _unaccounted:  # a new envelope field must be placed in the producer contract on purpose
    raise RuntimeError(f"JobEnvelope fields without a place in the job message: {sorted(_unaccounted)}")


#: The longest `source_error.reason` a message may carry (worker/store/jobs.py keeps as much in the job).
SOURCE_ERROR_REASON_MAX = 500


class SourceError(BaseModel):
    """Where and why the producer's source broke before its end."""

    model_config = ConfigDict(extra="forbid", title="SourceError")

    line: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description="The line of the source (a file's line, counted from 1) where it broke; null when not known.",
    )
    reason: str = Field(
        min_length=1,
        max_length=SOURCE_ERROR_REASON_MAX,
        description="What is wrong there, for people (e.g. `not valid JSON`). Never a document's content: it is "
        "stored in the job and shown wherever the job is.",
    )


#: Fields of a message that are not the envelope's: (type, field) as pydantic's create_model takes them.
MESSAGE_ONLY: dict[str, Any] = {
    "source_error": (
        SourceError | None,
        Field(
            default=None,
            description=(
                "Set when the producer's source broke part-way (a file cut short, a bad line): `documents` are those "
                "read before it. The job is stored and processed as any, and finishes with status `incomplete` "
                "whatever their outcomes (the counts say what became of each); its hash keeps `source_error` (the "
                "reason) and `source_error_line`. Leave it out (or null) when the documents are the whole source."
            ),
        ),
    ),
}


def _message_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in JobEnvelope.model_fields.items():
        if name in SET_BY_WORKER:
            continue
        if name == "target":
            # The envelope defaults to SoftOne; a message defaults to its tenant's target, known only to the worker.
            fields[name] = (Target | None, Field(default=None, description=DESCRIPTIONS[name]))
            continue
        described = copy.copy(info)  # same type, constraints (patterns, lengths) and default as the envelope's
        described.description = DESCRIPTIONS[name]
        fields[name] = (info.annotation, described)
    return {**fields, **MESSAGE_ONLY}


JobMessage: type[BaseModel] = create_model(
    "JobMessage",
    __config__=ConfigDict(extra="forbid", title="erpsync job message"),
    __doc__=(
        "One job for erpsync, written by a producer as one JSON object: `LPUSH {prefix}:submit '<message>'` "
        "(prefix ERPSYNC_KEY_PREFIX, default erpsync). Fields other than these are rejected; credentials and "
        "ERP addresses come from the worker's tenant configuration, never from a message."
    ),
    **_message_fields(),
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a job message, with its identity first."""
    schema = JobMessage.model_json_schema()
    head = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": schema.pop("title"),
        "description": schema.pop("description"),
    }
    return {**head, **schema}


def render() -> str:
    """The schema file's text: what `python -m schemas.jsonschema` writes."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.jsonschema", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write: exit 1 if the file is out of date")
    parser.add_argument("--out", type=Path, default=SCHEMA_PATH, help=f"the file (default {SCHEMA_PATH.name})")
    args = parser.parse_args(argv)
    text = render()
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
    if args.check:
        if current != text:
            print(f"{args.out} is out of date: run python -m schemas.jsonschema", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
