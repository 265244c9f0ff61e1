"""The names every other schema module builds on: targets, document kinds and the id alphabets.

Its own module so that the envelope (which checks a job's target takes its kind) and the table of document
types (schemas/targets.py, which is keyed by both) can each import it without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JOB_ID_PATTERN", "TENANT_PATTERN", "DocumentKind", "Target"]

#: Tenant names become part of Redis keys and log lines: keep them to a safe alphabet.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"


class Target(StrEnum):
    """Which ERP API a job is for."""

    SOFTONE = "softone"
    FORTNOX = "fortnox"
    INVOICE_SERVICE = "invoiceservice"


class DocumentKind(StrEnum):
    """What the documents of a job are: with the target, decides the endpoint and the schema."""

    CUSTOMER_INVOICE = "customer_invoice"
    ORDER = "order"
    OFFER = "offer"
    ARTICLE = "article"
