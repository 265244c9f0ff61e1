"""The job envelope: what a producer hands us, before any document in it is validated.

The envelope is validated as a whole (a job with no tenant cannot be processed), while its documents
stay raw JSON objects here: each is validated on its own later, so one bad document never rejects the
good ones beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class JobEnvelope(BaseModel):
    """One job: documents of one kind for one tenant and target."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    tenant: str = Field(pattern=TENANT_PATTERN)
    target: Target = Target.SOFTONE
    kind: DocumentKind
    documents: list[dict[str, Any]] = Field(min_length=1)
    source: str | None = Field(default=None, max_length=200)
    submitted_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _target_takes_kind(self) -> JobEnvelope:
        from schemas.targets import check_supported  # targets.py builds on this module's enums

        check_supported(self.target, self.kind)
        return self


def derived_external_id(job_id: str, position: int) -> str:
    """The ExternalId given to a document that came without one: unique, but only within this job.

    Re-submitting the same file makes a new job id and so new ids: protection against re-submission
    needs the producer's own ExternalId.
    """
    return f"{job_id}#{position}"
