"""JSON shapes the sandbox answers with: the operation result and the Filter invoice object."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sandbox.amounts import invoice_totals, row_amounts
from sandbox.rules import PRODUCT_ROW, parse_date
from sandbox.state import LedgerEntry

DEFAULT_DATETIME = "0001-01-01T00:00:00"  # .NET DateTime.MinValue, as in both examples
DUE_DAYS = 30  # DueDate when the document has none


def info_message(created: int) -> str:
    # Byte-for-byte the examples' JSON text "\\n\\n kundfakturor utav 1 ...": the service
    # returns a literal backslash-n (double-escaped), not newlines. Both examples (orders too)
    # say "kundfakturor". Nothing should parse this text.
    return f"\\n\\n kundfakturor utav {created} har skapats/uppdaterats."


def operation_result(
    *,
    success: bool,
    error_number: int = 0,
    error_message: str | None = None,
    info: str | None = None,
    request_id: str | None = None,
    keys: list[int] | None = None,
    strings: list[str] | None = None,
) -> dict[str, Any]:
    """Every field of the spec's response schema, in the schema's order."""
    keys, strings = keys or [], strings or []
    return {
        "Success": success,
        "SuccessNumber": 0,
        "ErrorNumber": error_number,
        "ErrorMessage": error_message,
        "InfoMessage": info,
        "CanUserOverride": False,
        "IntegerValue": 0,
        "IntegerValue2": 0,
        "DecimalValue": 0.0,
        "StringValue": request_id,
        "BooleanValue": False,
        "BooleanValue2": False,
        "DateTimeValue": DEFAULT_DATETIME,
        "Value": None,
        "Value2": None,
        "Dates": None,
        "Keys": keys,
        "Strings": strings,
        "IdDict": None,
        "IntDict": None,
        "IntDict2": None,
        "StrDict": None,
        "StrDict2": None,
        "StrIntListDict": None,
        "ObjectsAffected": len(keys),
        "StackTrace": None,
        "Exception": None,
        "Modified": DEFAULT_DATETIME,
        "ModifiedBy": None,
    }


def _day(value: Any) -> str:
    parsed = parse_date(value)
    assert parsed is not None  # validated before saving
    return parsed.date().isoformat() + "T00:00:00"


def invoice_view(entry: LedgerEntry) -> dict[str, Any]:
    """A saved customer invoice in the Filter response's Invoice shape (amounts as numbers)."""
    doc = entry.document
    currency = doc.get("Currency") or "SEK"
    rows_out, amounts = [], []
    for row in doc["InvoiceRows"]:
        a = row_amounts(row)
        amounts.append(a)
        rows_out.append(
            {
                "ProductNr": row.get("ProductNr") if row["CustomerRowType"] == PRODUCT_ROW else None,
                "Quantity": float(a.quantity),
                "Text": row.get("Text") or row.get("ProductName") or "",
                "UnitPrice": float(a.unit_price),
                "UnitPriceCurrency": float(a.unit_price),
                "VatAmount": float(a.vat_amount),
                "VatAmountCurrency": float(a.vat_amount),
                "SumAmount": float(a.sum_amount),
                "SumAmountCurrency": float(a.sum_amount),
                "Accounts": [],
                "AttestStateName": None,
                "AttestState": 0,
            }
        )
    total, vat = invoice_totals(amounts, currency)
    invoice_day = parse_date(doc["InvoiceDate"])
    assert invoice_day is not None
    if doc.get("DueDate") is not None:
        due = _day(doc["DueDate"])
    else:
        due = (invoice_day.date() + timedelta(days=DUE_DAYS)).isoformat() + "T00:00:00"
    return {
        "InvoiceId": entry.key,
        "InvoiceNr": entry.number,
        "CustomerNr": entry.customer_nr,
        "CustomerName": entry.customer_name,
        "CustomerOrgNr": None,
        "InvoiceDate": _day(doc["InvoiceDate"]),
        "DueDate": due,
        "BillingType": doc.get("BillingType") if doc.get("BillingType") is not None else 1,
        "Currency": currency,
        # 1 = draft/preliminary (sandbox default); the spec example shows 3 for a booked invoice.
        "OriginStatus": doc.get("OriginStatus") if doc.get("OriginStatus") is not None else 1,
        "TotalAmount": float(total),
        "TotalAmountCurrency": float(total),
        "VATAmount": float(vat),
        "VATAmountCurrency": float(vat),
        "InvoiceRows": rows_out,
    }
