"""Per-document validation: raw JSON object in, either a model or a list of field-level errors out.

`max_rows` caps every list of a document (InvoiceRows, and any list nested in it): a document beyond it fails
on its own, before its model is even tried, so one runaway export row count costs one failed document and
not a worker's memory and time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from schemas.actions import ActionDocument
from schemas.kinds import DocumentKind, Target
from schemas.targets import DocumentModel, document_type


class ValidDocument(Protocol):
    """A document that passed validation: a model of schemas/ or a wire validator's WireDocument."""

    def to_wire_json(self) -> str:
        """The document as the ERP takes it (wire names, no nulls)."""
        ...


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a document is invalid: where (wire field path) and why."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class DocumentError:
    """All reasons one document is invalid."""

    errors: tuple[FieldError, ...]

    def summary(self) -> str:
        return "; ".join(f"{e.field}: {e.reason}" if e.field else e.reason for e in self.errors)


def _path(loc: tuple[int | str, ...]) -> str:
    """`('InvoiceRows', 0, 'Quantity')` -> `InvoiceRows[0].Quantity` (wire names, as the producer sent them)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in {"date", "datetime"}:
            continue  # validator-internal segments, not fields
        else:
            out += f".{part}" if out else part
    return out


def _raw_path(loc: tuple[int | str, ...]) -> str:
    """The path of a place in a raw document, written like `_path` writes model paths (no segment skipped)."""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(loc))


#: Values shorter than this are not looked for in a reason: they are more often words of the reason itself ("SEK").
ECHO_MIN_LENGTH = 6
#: The text that replaces a value found in a reason.
ECHO_MASK = "…"


def _reason(error: Mapping[str, Any]) -> str:
    """The rule a value broke, never the value: our own messages name none (schemas/*.py), and as a last defence
    any text of the input (pydantic's messages may quote a part of it) found in the message is cut out."""
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if error["type"] == "missing":
        return "is mandatory and missing"
    if error["type"] == "extra_forbidden":
        return "is not a field of this document (misspelt?)"
    for text in sorted(_texts(error.get("input")), key=len, reverse=True):
        msg = msg.replace(text, ECHO_MASK)
    return msg


def _texts(value: Any) -> set[str]:
    """The texts of a value (its scalars, at any depth) that could be recognised in a message."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif item is not None and not isinstance(item, bool):
            text = str(item).strip()
            if len(text) >= ECHO_MIN_LENGTH:
                found.add(text)
    return found


def validate_document(
    kind: DocumentKind, raw: Any, target: Target = Target.SOFTONE, max_rows: int | None = None
) -> DocumentModel | DocumentError:
    """Validate one raw document of `kind` for `target`; never raises for bad input.

    With `max_rows`, a document with a list (at any depth) of more items fails with that list's path."""
    if not isinstance(raw, dict):
        return DocumentError((FieldError("", f"a document must be a JSON object, got {type(raw).__name__}"),))
    if max_rows is not None and (too_long := _lists_above(raw, max_rows)):
        return too_long
    try:
        return document_type(target, kind).model.model_validate(raw, by_alias=True)
    except ValidationError as exc:
        return _document_error(exc)


def validate_document_json(
    kind: DocumentKind, text: str | bytes, target: Target = Target.SOFTONE, max_rows: int | None = None
) -> ValidDocument | DocumentError:
    """`validate_document` of a document as JSON text: the same models, rules and messages.

    pydantic parses the JSON itself (in Rust), which is about a third cheaper than json.loads followed
    by validation of the Python objects: this is the intake hot path. Where the type has a wire validator
    (schemas/wire.py), a document it accepts comes back as its wire JSON (a `WireDocument`) without a model
    instance; whatever it refuses goes to the model, whose errors are the ones reported. Either answer has
    `to_wire_json()`. Input that is not a JSON object at all goes the Python way, for the same messages.

    The row limit costs nothing for ordinary documents: a list of n items has n - 1 commas, so a text
    with fewer than `max_rows` commas cannot hold a list beyond it; only bigger texts are parsed for it.
    """
    if max_rows is not None and (text.count(b",") if isinstance(text, bytes) else text.count(",")) >= max_rows:
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raw = None  # not JSON: the model's parser says why, below
        if isinstance(raw, dict) and (too_long := _lists_above(raw, max_rows)):
            return too_long
    doc_type = document_type(target, kind)
    if doc_type.wire is not None:
        try:
            return doc_type.wire.validate_json(text)
        except ValidationError:
            pass  # the model decides, and says why: the wire validator is only a faster way to say yes
    try:
        return doc_type.model.model_validate_json(text, by_alias=True)
    except ValidationError as exc:
        if any(not err["loc"] for err in exc.errors(include_url=False, include_input=False)):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as bad:
                return DocumentError((FieldError("", f"not valid JSON ({bad.msg})"),))
            return validate_document(kind, raw, target, max_rows)
        return _document_error(exc)


def _lists_above(raw: dict[str, Any], max_rows: int) -> DocumentError | None:
    """The lists of a document (at any depth) with more than `max_rows` items, by wire path, or None.

    Walked with a stack, not recursion: nesting depth is the producer's to choose. A list found too long
    is not looked into: its own length is the reason.
    """
    errors: list[FieldError] = []
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), raw)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*loc, str(k)), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            if len(value) > max_rows:
                reason = f"{len(value)} rows, above the limit of {max_rows} (ERPSYNC_MAX_DOCUMENT_ROWS)"
                errors.append(FieldError(_raw_path(loc), reason))
            else:
                stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
    return DocumentError(tuple(errors)) if errors else None


def _document_error(exc: ValidationError) -> DocumentError:
    return DocumentError(
        tuple(
            FieldError(_path(tuple(err["loc"])), _reason(err))
            for err in exc.errors(include_url=False, include_context=False)
        )
    )


def validate_action(kind: DocumentKind, text: str | bytes, target: Target) -> ActionDocument | DocumentError:
    """Validate one document of an `act` job (schemas/actions.py) for `target` and `kind`; never raises."""
    try:
        raw = json.loads(text)
    except ValueError:
        return DocumentError((FieldError("", "a document must be a JSON object"),))
    if not isinstance(raw, dict):
        return DocumentError((FieldError("", f"a document must be a JSON object, got {type(raw).__name__}"),))
    try:
        return ActionDocument.validate_for(target, kind, raw)
    except ValidationError as exc:
        return _document_error(exc)
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        return DocumentError((FieldError(field, reason),))
