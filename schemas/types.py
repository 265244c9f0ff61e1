"""Field types shared by the ERP models: strict-enough integers, money, dates and ids.

JSON producers are written in many languages, so we accept what is unambiguous ("6" for an integer,
11.9 or "11.9" for an amount) and refuse what silently changes meaning: booleans where numbers belong,
NaN/Infinity, and numbers where the ERP wants a string (customer number "013" is not 13).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, GetCoreSchemaHandler, PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import core_schema


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _parse_date_or_datetime(value: Any) -> date | datetime:
    """The tables type these fields `string (date-time)`, both spec examples send a plain date."""
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a date (YYYY-MM-DD) or an ISO 8601 date-time string")
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not a valid date (YYYY-MM-DD) or ISO 8601 date-time") from None


def _date_to_wire(value: date | datetime) -> str:
    return value.isoformat()


def _id_to_str(value: Any) -> Any:
    # An integer id is unambiguous as text (no leading zeros to lose); a float or bool is not.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


INT_CHECK = BeforeValidator(_no_bool)
"""`Int`'s check, by which the wire validator (schemas/wire.py) knows an `Int` to replace with a strict int."""

Int = Annotated[int, INT_CHECK]
"""An integer; "6" is accepted, True and 6.5 are not."""

Money = Annotated[
    Decimal,
    # Both checks are pydantic-core's own, with no Python call per field (this type is on every row, on the
    # intake hot path): a boolean is not a decimal input ("decimal_type"), NaN and Infinity are refused
    # ("finite_number"), each with pydantic's own message.
    Field(allow_inf_nan=False),
    # The ERP wants JSON numbers; Decimal keeps exact values in Python and in comparisons.
    PlainSerializer(float, return_type=float, when_used="json"),
]
"""An exact decimal amount or quantity, sent as a JSON number."""


class _WireAmount:
    """The validation of `WireAmount`, all in pydantic-core (no Python call per value)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.union_schema(
            [
                # A JSON number (integer or not), never true/false: strict floats refuse booleans.
                core_schema.float_schema(strict=True, allow_inf_nan=False),
                # A number as text ("11.9", " 5 "), parsed by pydantic-core's own float parser.
                core_schema.chain_schema(
                    [core_schema.str_schema(strict=True), core_schema.float_schema(allow_inf_nan=False)]
                ),
            ],
            custom_error_type="amount_type",
            custom_error_message=AMOUNT_ERROR,
        )


AMOUNT_ERROR = 'must be a finite number (11.9, or as text "11.9")'

WireAmount = Annotated[float, _WireAmount]
"""An amount or quantity that an ERP takes as a JSON number and that we only pass on (SoftOne's rows).

Accepts what `Money` accepts (11.9, 12, "11.9") and refuses what it refuses (booleans, NaN, Infinity, "12 st"),
with one message. Held as a float rather than a Decimal: the value goes out as a JSON number, i.e. a double,
either way (a Decimal was converted with float() on the way out), so nothing is lost that the wire kept, and a
float costs about a sixth less to validate and a quarter less to encode on the intake hot path (about 10 µs of
60 per ten-row invoice, measured). Models that compute with amounts (totals, VAT checks) keep `Money`."""

DateOrDateTime = Annotated[
    date | datetime,
    PlainValidator(_parse_date_or_datetime),
    PlainSerializer(_date_to_wire, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A date or date-time; sent back in the form it was given ("2026-02-18" stays a date)."""

NonEmptyStr = Annotated[str, Field(min_length=1), BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)]
"""A string that must carry something once surrounding blanks are removed."""

ExternalId = Annotated[str, BeforeValidator(_id_to_str), Field(min_length=1, max_length=200)]
"""The producer's own id for a document (e.g. a POS receipt id): text, integers accepted as text."""
