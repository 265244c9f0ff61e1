"""SoftOne GO models: invoice/order documents, their rows, the operation result and the invoice Filter.

Field names follow the tables of SoftOne GO's public API documentation, with its misspellings corrected:
`Invoiceld`→`InvoiceId`, `CustomerInvoiceHeadIOld`→`CustomerInvoiceHeadId`, `ActorCompanyld`→`ActorCompanyId`,
`Batchld`→`BatchId`, `PriceListTypeld`→`PriceListTypeId`, `PaymentConditionld`→`PaymentConditionId`,
`DeliveryConditionld`→`DeliveryConditionId`, `CustomerInvoiceRowIOld`→`CustomerInvoiceRowId`.
PascalCase on the wire (aliases), snake_case in Python.

Where the specs contradict themselves we accept what the real service plainly accepts:
- `OriginType`: the tables say "Always 6", the invoice example sends 2 and the order example 6. We require
  an integer and pass it through unchanged; the ERP decides.
- Row price: the invoice example prices rows with `UnitPrice`, the order example with `Amount` (the table
  calls `Amount` mandatory, "Price for the row"). A product row must carry at least one of the two.
- `BillingType` appears in the invoice example but in no table: modelled as an optional integer.
- The order example has a trailing comma after `"RowNr": 1`: that is not JSON, so the body must be sent
  without it (the sandbox answers 400 to it, as a JSON API would).
- Unknown fields are refused (`extra="forbid"`): a misspelt "Discont" silently dropped would produce a
  wrong accounting document, which is worse than a clear validation error.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_pascal

from schemas.types import DateOrDateTime, ExternalId, Int, Money, NonEmptyStr, WireAmount
from schemas.wire import WireValidator

_WIRE = ConfigDict(
    alias_generator=to_pascal,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
    extra="forbid",
)


class RowType(IntEnum):
    """`CustomerRowType` of an invoice/order row."""

    PRODUCT = 2  # ProductRow
    TEXT = 3  # TextRow (free text)


class InvoiceRow(BaseModel):
    """One row of `InvoiceRows`, shared by invoices and orders (the order endpoint uses InvoiceRows too)."""

    model_config = _WIRE

    customer_row_type: RowType
    row_nr: Int = Field(ge=0)
    product_nr: str | None = None
    quantity: WireAmount | None = None
    amount: WireAmount | None = None
    unit_price: WireAmount | None = None
    text: str | None = None
    account_sie_dim6: str | None = None
    customer_invoice_row_id: Int | None = None
    customer_invoice_head_id: Int | None = None
    invoice_row_id: Int | None = None
    invoice_nr: str | None = None
    actor_company_id: Int | None = None
    import_: bool | None = Field(default=None, alias="Import")
    type: str | None = None
    status: Int | None = None
    source: Int | None = None
    batch_id: str | None = None
    product_id: Int | None = None
    product_group_id: Int | None = None
    product_name: str | None = None
    product_name2: str | None = None
    discount: WireAmount | None = None
    unit: str | None = None
    vat_rate: WireAmount | None = None
    account_nr: str | None = None
    purchase_price: WireAmount | None = None
    vat_amount: WireAmount | None = None
    sum_amount: WireAmount | None = None
    error_message: str | None = None
    created: DateOrDateTime | None = None
    modified: DateOrDateTime | None = None
    external_id: str | None = None
    category_ids: list[Int] | None = None
    is_read_only: bool | None = None

    @model_validator(mode="after")
    def _mandatory_by_row_type(self) -> InvoiceRow:
        _check_row(self.customer_row_type, self.product_nr, self.quantity, self.unit_price, self.amount, self.text)
        return self


_PRODUCT = RowType.PRODUCT  # a module global: cheaper than the enum's class attribute in the row check


def _check_row(
    row_type: RowType, product_nr: str | None, quantity: Any, unit_price: Any, amount: Any, text: str | None
) -> None:
    """What a row of each type must hold (ValueError if it does not). Runs for every row of every document, in
    the model and in the wire validator: the common case (a complete row) is a few comparisons."""
    if row_type == _PRODUCT:  # a RowType in the model, an int in the wire validator (schemas/wire.py, _in_rust)
        if product_nr is None or quantity is None or not product_nr.strip():
            missing = [name for name, absent in (("ProductNr", product_nr is None or not product_nr.strip()),
                                                 ("Quantity", quantity is None)) if absent]  # fmt: skip
            raise ValueError(f"a product row (CustomerRowType 2) needs {' and '.join(missing)}")
        if unit_price is None and amount is None:
            raise ValueError("a product row (CustomerRowType 2) needs a price: UnitPrice or Amount")
    elif not (text and text.strip()):
        raise ValueError("a text row (CustomerRowType 3) needs a Text")


def _check_row_numbers(row_nrs: Iterable[int]) -> None:
    seen: dict[int, int] = {}
    for index, row_nr in enumerate(row_nrs):
        if row_nr in seen:  # rows by position: the RowNr is a value of the document, not quoted
            raise ValueError(f"InvoiceRows[{index}] has the same RowNr as InvoiceRows[{seen[row_nr]}]")
        seen[row_nr] = index


class _DocumentHead(BaseModel):
    """The header both endpoints accept: the order endpoint "follows an invoice-based structure"."""

    model_config = _WIRE

    customer_nr: NonEmptyStr
    invoice_date: DateOrDateTime
    origin_type: Int
    invoice_rows: list[InvoiceRow] = Field(min_length=1)
    external_id: ExternalId | None = None

    customer_invoice_head_id: Int | None = None
    invoice_id: Int | None = None
    customer_invoice_nr: str | None = None
    seq_nr: Int | None = None
    ocr: str | None = Field(default=None, alias="OCR")
    actor_company_id: Int | None = None
    import_: bool | None = Field(default=None, alias="Import")
    type: Int | None = None
    status: Int | None = None
    source: Int | None = None
    origin_status: Int | None = None
    batch_id: str | None = None
    price_list_type_id: Int | None = None
    payment_condition: str | None = None
    payment_condition_id: Int | None = None
    delivery_condition: str | None = None
    delivery_condition_id: Int | None = None
    delivery_type: str | None = None
    delivery_type_id: Int | None = None
    auto_create_customer: bool | None = None
    customer_id: Int | None = None
    customer_external_nr: str | None = None
    customer_name: str | None = None
    customer_orgnr: str | None = None
    registration_type: Int | None = None
    billing_type: Int | None = None  # only in the invoice example, see module docstring
    due_date: DateOrDateTime | None = None
    delivery_date: DateOrDateTime | None = None
    voucher_date: DateOrDateTime | None = None
    reference_our: str | None = None
    reference_your: str | None = None
    order_date: DateOrDateTime | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    note: str | None = None
    error_message: str | None = None
    created: DateOrDateTime | None = None
    created_by: str | None = None
    modified: DateOrDateTime | None = None
    modified_by: str | None = None
    order_nr: str | None = None
    order_type: Int | None = None

    @field_validator("customer_nr", mode="before")
    @classmethod
    def _customer_nr_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError('must be a string: customer numbers may have leading zeros ("013")')
        return value

    @model_validator(mode="after")
    def _row_numbers_unique(self) -> _DocumentHead:
        _check_row_numbers(row.row_nr for row in self.invoice_rows)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON object this document is sent as (PascalCase, no empty fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_wire_json(self) -> str:
        """`to_wire()` as compact JSON text, encoded by pydantic directly (the intake hot path)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class CustomerInvoice(_DocumentHead):
    """A document for `POST Billing/CustomerInvoices`."""


class Order(_DocumentHead):
    """A document for `POST Billing/Orders`."""


def _check_wire_document(document: dict[str, Any]) -> dict[str, Any]:
    """The model validators of a document and its rows, over the wire validator's dict (keys are aliases)."""
    rows = document["InvoiceRows"]
    for row in rows:
        get = row.get
        _check_row(row["CustomerRowType"], get("ProductNr"), get("Quantity"), get("UnitPrice"), get("Amount"),
                   get("Text"))  # fmt: skip
    _check_row_numbers(row["RowNr"] for row in rows)
    return document


_COVERED = {"_mandatory_by_row_type", "_row_numbers_unique"}
INVOICE_WIRE = WireValidator(CustomerInvoice, _check_wire_document, _COVERED)
ORDER_WIRE = WireValidator(Order, _check_wire_document, _COVERED)


class OperationResult(BaseModel):
    """SoftOne's answer to a POST: execution result, created ids (`Keys`, `Strings`) and diagnostics.

    Tolerant on purpose (extra fields allowed, nulls for lists accepted): it is read from the ERP.
    """

    model_config = ConfigDict(alias_generator=to_pascal, validate_by_name=True, extra="allow")

    success: bool
    success_number: int = 0
    error_number: int = 0
    error_message: str | None = None
    info_message: str | None = None
    can_user_override: bool = False
    integer_value: int | None = 0
    integer_value2: int | None = 0
    decimal_value: float | None = 0.0
    string_value: str | None = None
    boolean_value: bool | None = False
    boolean_value2: bool | None = False
    date_time_value: str | None = None
    value: Any = None
    value2: Any = None
    dates: list[str] | None = None
    keys: list[int] = Field(default_factory=list)
    strings: list[str] = Field(default_factory=list)
    id_dict: Any = None
    int_dict: Any = None
    int_dict2: Any = None
    str_dict: Any = None
    str_dict2: Any = None
    str_int_list_dict: Any = None
    objects_affected: int = 0
    stack_trace: str | None = None
    exception: str | None = None
    modified: str | None = None
    modified_by: str | None = None

    @field_validator("keys", "strings", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class InvoiceFilter(BaseModel):
    """Body of `POST Billing/CustomerInvoices/Filter` (all criteria optional)."""

    model_config = ConfigDict(alias_generator=to_pascal, validate_by_name=True, serialize_by_alias=True)

    invoice_id: str | None = None
    number: str | None = None
    invoice_date_from: DateOrDateTime | None = None
    invoice_date_to: DateOrDateTime | None = None
    include_preliminary: bool | None = None
    include_voucher: bool | None = None
    page_number: int | None = None
    page_nr_of_records: int | None = None
    include_row_account_info: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class FilteredInvoiceRow(BaseModel):
    """A row of an invoice found by the Filter endpoint."""

    model_config = ConfigDict(alias_generator=to_pascal, validate_by_name=True, extra="allow")

    product_nr: str | None = None
    quantity: Money | None = None
    text: str | None = None
    unit_price: Money | None = None
    unit_price_currency: Money | None = None
    vat_amount: Money | None = None
    vat_amount_currency: Money | None = None
    sum_amount: Money | None = None
    sum_amount_currency: Money | None = None
    accounts: list[Any] | None = None
    attest_state_name: str | None = None
    attest_state: int | None = None


class FilteredInvoice(BaseModel):
    """An invoice found by the Filter endpoint (the response is a JSON array of these)."""

    model_config = ConfigDict(alias_generator=to_pascal, validate_by_name=True, extra="allow")

    invoice_id: int
    invoice_nr: str | None = None
    customer_nr: str | None = None
    customer_name: str | None = None
    customer_org_nr: str | None = None
    invoice_date: DateOrDateTime | None = None
    due_date: DateOrDateTime | None = None
    billing_type: int | None = None
    currency: str | None = None
    origin_status: int | None = None
    total_amount: Money | None = None
    total_amount_currency: Money | None = None
    vat_amount: Money | None = Field(default=None, alias="VATAmount")
    vat_amount_currency: Money | None = Field(default=None, alias="VATAmountCurrency")
    invoice_rows: list[FilteredInvoiceRow] = Field(default_factory=list)
