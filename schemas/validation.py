"""Per-document validation: raw JSON object in, either a model or a list of field-level errors out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.envelope import DocumentKind, Target
from schemas.targets import document_type


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


def _reason(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if error["type"] == "missing":
        msg = "is mandatory and missing"
    elif error["type"] == "extra_forbidden":
        msg = "is not a field of this document (misspelt?)"
    return msg


def validate_document(kind: DocumentKind, raw: Any, target: Target = Target.SOFTONE) -> BaseModel | DocumentError:
    """Validate one raw document of `kind` for `target`; never raises for bad input."""
    if not isinstance(raw, dict):
        return DocumentError((FieldError("", f"a document must be a JSON object, got {type(raw).__name__}"),))
    try:
        return document_type(target, kind).model.model_validate(raw, by_alias=True)
    except ValidationError as exc:
        return _document_error(exc)


def validate_document_json(
    kind: DocumentKind, text: str | bytes, target: Target = Target.SOFTONE
) -> BaseModel | DocumentError:
    """`validate_document` of a document as JSON text: the same models, rules and messages.

    pydantic parses the JSON itself (in Rust), which is about a third cheaper than json.loads followed
    by validation of the Python objects: this is the intake hot path. Input that is not a JSON object
    at all goes the Python way, for the same messages.
    """
    try:
        return document_type(target, kind).model.model_validate_json(text, by_alias=True)
    except ValidationError as exc:
        if any(not err["loc"] for err in exc.errors(include_url=False, include_input=False)):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as bad:
                return DocumentError((FieldError("", f"not valid JSON ({bad.msg})"),))
            return validate_document(kind, raw, target)
        return _document_error(exc)


def _document_error(exc: ValidationError) -> DocumentError:
    return DocumentError(
        tuple(
            FieldError(_path(tuple(err["loc"])), _reason(err))
            for err in exc.errors(include_url=False, include_input=False)
        )
    )
