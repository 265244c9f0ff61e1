"""The invoice service's ``POST /invoices`` (spec: invoice-service-create-invoice.txt).

* Authentication: ``Authorization: Bearer <API token>``, a static token per configured client
  (demo: ``demo-invoice-service-token``); missing or unknown -> 401.
* The body is validated by sandbox.invoice_service_rules (required fields, types, rows vs.
  totals vs. vats, VAT percentages, dates).
* Success: HTTP 200 - the spec says "With a successful 200 response the body contains the
  created invoice object" - with the created invoice shaped like the spec's example response:
  every field, keys sorted as there, ``id`` "I.<n>", rows with ids "IR.<n>", ``statuses.main``
  "CREATED", the client's id ("C.<id>") and name, ``createdBy`` / ``createdDate``, balances 0,
  and the values sent. Where the example response differs from its own request (invoiceNumber
  123457 for 123456, productCode REMINDER_SERVICE for INVOICE_SERVICE, identificationNumber null)
  it shows another invoice: the sandbox echoes what was sent. Defaults for what was not sent come
  from the example response (documentTemplateCode STANDARD_MARKETING, useRecourse true, fees 0,
  currency SEK at rate 1); ``totalToPay`` defaults to total + totalRoundOff - taxReduction and
  ``totalToPayBase`` is totalToPay x exchangeRate.
* Errors: the spec documents no error body. The sandbox's choice (not the real service's
  documented format): ``{"status": <http status>, "errors": [{"field": "<path>" | null,
  "message": "..."}]}`` with every problem found, HTTP 400 for an invalid invoice, 401 for
  authentication.
* No look-up endpoint is documented, so there is none: the ledger (``/_sandbox/ledger?target=
  invoiceservice``) is the only way to see what was created. Sending the same invoiceNumber again
  creates another invoice (the spec does not say the service refuses it).
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.config import InvoiceServiceClient
from sandbox.fortnox import bearer_token
from sandbox.invoice_service_rules import CENT, FieldError, money, validate_invoice
from sandbox.jsonbody import parse_json
from sandbox.state import LedgerEntry, SandboxState, iso_utc

PATH = "/invoices"

ADDRESS_KEYS = ("address", "address2", "address3", "city", "countryCode", "name", "zip")
DEBTOR_KEYS = [
    "FMI",
    "GLN",
    "cellPhone",
    "customerNumber",
    "deliveryAddress",
    "distributionChannel",
    "distributionChannelOverride",
    "email",
    "id",
    "identificationNumber",
    "invoiceAddress",
    "name",
    "phone",
    "type",
    "vatNumber",
]
ROW_KEYS = [
    "accountNumber",
    "articleNumber",
    "description",
    "discountType",
    "price",
    "quantity",
    "total",
    "totalDiscount",
    "totalExclVat",
    "totalVat",
    "unit",
    "vatPercentage",
]
# Top-level fields of the example response that the request carries as sent (None when absent).
ECHOED_KEYS = [
    "activatedById",
    "activatedDate",
    "debitInvoiceNumber",
    "distributionCode",
    "ourOrderNumber",
    "ourReference",
    "paymentReference",
    "remark",
    "serviceProviderCode",
    "yourContactPerson",
    "yourOrderNumber",
    "yourReference",
]
BALANCE_KEYS = [
    "capital",
    "capitalFinanced",
    "capitalFinancedLocale",
    "capitalLocale",
    "capitalService",
    "capitalServiceLocale",
    "interest",
    "interestLocale",
    "reminder",
    "reminderLocale",
    "total",
    "totalLocale",
]


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def error_response(status: int, errors: list[FieldError]) -> JSONResponse:
    """The sandbox's error body (the spec documents none, see the module docstring)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"status": status, "errors": [e.as_json() for e in errors]}
    return JSONResponse(body, status_code=status, headers=headers)


def client_id_text(client: InvoiceServiceClient) -> str:
    return f"C.{client.client_id}"


def _number(value: Decimal) -> int | float:
    """A computed amount as the example shows amounts: 250, 12.5."""
    value = value.quantize(CENT, ROUND_HALF_UP)
    return int(value) if value == value.to_integral_value() else float(value)


def _with_defaults(sent: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, **(sent or {})}


def _sorted(value: Any) -> Any:
    """Keys in alphabetical order at every level, as in the example response."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def created_invoice(
    body: dict[str, Any], client: InvoiceServiceClient, invoice_id: str, row_ids: list[str], created: float
) -> dict[str, Any]:
    """The created invoice as the service answers it (see the module docstring)."""
    address = dict.fromkeys(ADDRESS_KEYS)
    debtor = _with_defaults(body["debtor"], dict.fromkeys(DEBTOR_KEYS))
    debtor["invoiceAddress"] = _with_defaults(debtor["invoiceAddress"], address)
    if debtor["deliveryAddress"] is not None:
        debtor["deliveryAddress"] = _with_defaults(debtor["deliveryAddress"], address)
    currency = _with_defaults(
        body.get("currency"), {"baseCurrency": "SEK", "exchangeRate": 1, "invoiceCurrency": "SEK"}
    )
    totals = _with_defaults(body["totals"], {"taxReduction": 0, "totalRoundOff": 0})
    if totals.get("totalToPay") is None:
        to_pay = money(totals["total"]) + money(totals["totalRoundOff"]) - money(totals["taxReduction"])
        totals["totalToPay"] = _number(to_pay)
    rate = money(currency["exchangeRate"]) if currency["exchangeRate"] is not None else Decimal(1)
    totals["totalToPayBase"] = _number(money(totals["totalToPay"]) * rate)
    rows = [
        {**dict.fromkeys(ROW_KEYS), **row, "id": row_id}
        for row, row_id in zip(body["articleRows"], row_ids, strict=True)
    ]
    out: dict[str, Any] = {key: body.get(key) for key in ECHOED_KEYS}
    out |= {
        "articleRows": rows,
        "balances": dict.fromkeys(BALANCE_KEYS, 0),
        "clientId": client_id_text(client),
        "clientName": client.name,
        "createdBy": client.created_by,
        "createdDate": iso_utc(created, "seconds").removesuffix("Z"),
        "currency": currency,
        "dates": _with_defaults(
            body["dates"],
            {"deliveryDate": None, "latestFinancialDate": None, "ledgerPerformedDate": None, "pausedUntilDate": None},
        ),
        "debtor": debtor,
        "document": {
            "attachment": None,
            "connectedFileCount": 0,
            "invoice": None,
            "invoicePreview": uuid.uuid4().hex,
            "invoiceWithAttachments": None,
        },
        "documentTemplateCode": body.get("documentTemplateCode") or "STANDARD_MARKETING",
        "fees": _with_defaults(
            body.get("fees"),
            {"administration": 0, "administrationVatPercentage": None, "freight": 0, "freightVatPercentage": None},
        ),
        "id": invoice_id,
        "invoiceNumber": body["invoiceNumber"],
        "isRecourse": False,
        "partPayment": {"isPartPayment": False, "partPaymentPlanId": None},
        "productCode": body.get("productCode") or "INVOICE_SERVICE",
        "refund": body.get("refund") if body.get("refund") is not None else False,
        "reminderProfileCode": None,
        "reverseCharge": body.get("reverseCharge") if body.get("reverseCharge") is not None else False,
        "statuses": {"ledger": None, "ledgerSubType": None, "main": "CREATED"},
        "terms": _with_defaults(body.get("terms"), {"delivery": None, "payment": None}),
        "totals": totals,
        "type": body.get("type") or "INVOICE",
        "useRecourse": body.get("useRecourse") if body.get("useRecourse") is not None else True,
        "vats": body["vats"],
    }
    return _sorted(out)


async def create_invoice(request: Request) -> Response:
    state = _state(request)
    client = state.config.invoice_service_clients.get(bearer_token(request.headers))
    if client is None:
        return error_response(401, [FieldError(None, "Missing or invalid API token (Authorization: Bearer ...)")])
    try:
        body = parse_json(await request.body())
    except ValueError as exc:
        return error_response(400, [FieldError(None, f"The body is not valid JSON: {exc}")])
    errors = validate_invoice(body, client_id_text(client))
    if errors:
        return error_response(400, errors)
    # No `await` from here on: ids are taken and the invoice saved atomically.
    invoice_id = f"I.{next(state.invoice_service_ids)}"
    row_ids = [f"IR.{next(state.invoice_service_row_ids)}" for _ in body["articleRows"]]
    now = state.clock()
    answer = created_invoice(body, client, invoice_id, row_ids, now)
    state.add(
        LedgerEntry(
            key=invoice_id,
            kind="customer_invoice",
            company_id=client.client_id,
            number=body["invoiceNumber"],
            customer_nr=body["debtor"]["customerNumber"],
            customer_name=body["debtor"]["name"],
            invoice_date=body["dates"]["invoiceDate"],
            external_id=body["invoiceNumber"],
            created_at=now,
            request_id=str(uuid.uuid4()),
            document=body,
            target="invoiceservice",
        )
    )
    return JSONResponse(answer)


def routes() -> list[Route]:
    return [Route(PATH, create_invoice, methods=["POST"])]
