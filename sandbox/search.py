"""The CustomerInvoices Filter: parse the criteria object and select matching invoices.

Decisions (the spec leaves them open):

* ``InvoiceId`` is "string" in the body table but an integer in the response: both ``123``
  and ``"123"`` are accepted. ``Number`` matches ``InvoiceNr`` (a string; an integer is
  accepted too).
* ``InvoiceDateFrom``/``InvoiceDateTo`` are inclusive and may be dates or date-times. Invoices
  are dated at midnight (the response says ``YYYY-MM-DDT00:00:00``), so a date-only
  ``InvoiceDateTo`` includes that day.
* ``IncludePreliminary``/``IncludeVoucher``/``IncludeRowAccountInfo`` are accepted and do not
  filter: every invoice of the calling company matches (the spec does not say how a
  preliminary invoice is recognised). A client that wants API-created invoices should still
  send ``IncludePreliminary: true`` against the real service.
* Results are ordered by InvoiceId. ``PageNrOfRecords`` pages them (``PageNumber`` is
  1-based, default 1); the example's ``maxNrRows`` query parameter caps the count afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.rules import EXPECTED_DATE, is_int, parse_date
from sandbox.state import LedgerEntry


@dataclass(frozen=True)
class Criteria:
    invoice_id: int | None = None
    number: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    page_number: int = 1
    page_size: int | None = None
    max_rows: int | None = None


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not is_int(value) or value < 1:
        raise ValueError(f"{name} har ett ogiltigt värde ({value!r}): förväntade ett positivt heltal.")
    return value


def parse_criteria(body: Mapping[str, Any], max_nr_rows: str | None) -> Criteria:
    """Criteria from the JSON body and the ``maxNrRows`` query parameter; ValueError if invalid."""
    dates: dict[str, datetime | None] = {}
    for name in ("InvoiceDateFrom", "InvoiceDateTo"):
        raw = body.get(name)
        dates[name] = None if raw is None else parse_date(raw)
        if raw is not None and dates[name] is None:
            raise ValueError(f"{name} har ett ogiltigt värde ({raw!r}): {EXPECTED_DATE}.")
    for name in ("IncludePreliminary", "IncludeVoucher", "IncludeRowAccountInfo"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise ValueError(f"{name} har ett ogiltigt värde ({body[name]!r}): förväntade true eller false.")
    number = body.get("Number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, str | int)):
        raise ValueError(f"Number har ett ogiltigt värde ({number!r}): förväntade en sträng.")
    return Criteria(
        invoice_id=_positive_int(body.get("InvoiceId"), "InvoiceId"),
        number=None if number is None or number == "" else str(number),
        date_from=dates["InvoiceDateFrom"],
        date_to=dates["InvoiceDateTo"],
        page_number=_positive_int(body.get("PageNumber"), "PageNumber") or 1,
        page_size=_positive_int(body.get("PageNrOfRecords"), "PageNrOfRecords"),
        max_rows=_positive_int(max_nr_rows, "maxNrRows"),
    )


def _matches(entry: LedgerEntry, c: Criteria) -> bool:
    day = parse_date(entry.invoice_date)
    assert day is not None  # validated before saving
    day = datetime(day.year, day.month, day.day)
    return (
        (c.invoice_id is None or entry.key == c.invoice_id)
        and (c.number is None or entry.number == c.number)
        and (c.date_from is None or day >= c.date_from)
        and (c.date_to is None or day <= c.date_to)
    )


def select(entries: Iterable[LedgerEntry], company_id: int, c: Criteria) -> list[LedgerEntry]:
    """The calling company's customer invoices matching ``c``, paged and capped."""
    invoices = (
        e for e in entries if e.target == "softone" and e.kind == "customer_invoice" and e.company_id == company_id
    )
    found = sorted((e for e in invoices if _matches(e, c)), key=lambda e: e.key)
    if c.page_size is not None:
        found = found[(c.page_number - 1) * c.page_size : c.page_number * c.page_size]
    if c.max_rows is not None:
        found = found[: c.max_rows]
    return found
