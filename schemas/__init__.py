"""Pydantic v2 models for everything that crosses a boundary: ERP documents, ERP answers, job envelopes.

Pure data: nothing in this package talks to Redis, HTTP or Celery, so it can be used by producers, the
worker and tests alike.
"""

from schemas.envelope import DocumentKind, JobEnvelope, Lane, Operation, Target
from schemas.softone import (
    CustomerInvoice,
    FilteredInvoice,
    FilteredInvoiceRow,
    InvoiceFilter,
    InvoiceRow,
    OperationResult,
    Order,
    RowType,
)
from schemas.validation import DocumentError, FieldError, validate_document

__all__ = [
    "CustomerInvoice",
    "DocumentError",
    "DocumentKind",
    "FieldError",
    "FilteredInvoice",
    "FilteredInvoiceRow",
    "InvoiceFilter",
    "InvoiceRow",
    "JobEnvelope",
    "Lane",
    "Operation",
    "OperationResult",
    "Order",
    "RowType",
    "Target",
    "validate_document",
]
