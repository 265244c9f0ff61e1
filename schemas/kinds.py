"""The names every other schema module builds on: targets, document kinds and the id alphabets.

Its own module so that the envelope (which checks a job's target takes its kind) and the table of document
types (schemas/targets.py, which is keyed by both) can each import it without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JOB_ID_PATTERN", "TENANT_PATTERN", "DocumentKind", "Lane", "Target"]

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


class Lane(StrEnum):
    """A job's lane: `interactive` jobs (a few documents someone waits for) go before the `bulk` ones (files) of the
    same tenant."""

    # The envelope's `priority`, the `lane` field of the job's hash; the intake queue keeps a list per tenant and
    # lane, and never takes both lanes in one run (worker/store/intake.py). A job that does not say is sized.

    INTERACTIVE = "interactive"
    BULK = "bulk"

    @classmethod
    def for_size(cls, documents: int, interactive_max: int) -> Lane:
        """The lane of a job of `documents` documents that did not ask for one: interactive up to
        `interactive_max` (ERPSYNC_INTERACTIVE_MAX_DOCUMENTS), bulk above."""
        return cls.INTERACTIVE if documents <= interactive_max else cls.BULK


class Operation(StrEnum):
    """What a job asks for its documents whose id the ERP holds already (the envelope's `operation`)."""

    CREATE = "create"  # create what is new; one created before is `duplicate` (same content) or `changed`
    UPSERT = "upsert"  # also send a changed one as an update of the document the ERP holds, where it takes updates
    ACT = "act"  # the documents are actions on documents created earlier, named by their ids (schemas/actions.py)
