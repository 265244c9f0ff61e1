"""The job envelope: what a producer hands us, before any document in it is validated.

The envelope is validated as a whole (a job with no tenant cannot be processed), while its documents
stay raw JSON objects here: each is validated on its own later, so one bad document never rejects the
good ones beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.actions import actions_of
from schemas.kinds import JOB_ID_PATTERN, TENANT_PATTERN, DocumentKind, Lane, Operation, Target
from schemas.targets import check_supported

__all__ = [
    "JOB_ID_PATTERN",
    "TENANT_PATTERN",
    "DocumentKind",
    "JobEnvelope",
    "Lane",
    "Operation",
    "Target",
    "derived_external_id",
]


class JobEnvelope(BaseModel):
    """One job: documents of one kind for one tenant and target."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    tenant: str = Field(pattern=TENANT_PATTERN)
    target: Target = Target.SOFTONE
    kind: DocumentKind
    documents: list[dict[str, Any]] = Field(min_length=1)
    source: str | None = Field(default=None, max_length=200)
    # The job's lane; None: sized by its documents (Lane.for_size, ERPSYNC_INTERACTIVE_MAX_DOCUMENTS).
    priority: Lane | None = None
    operation: Operation = Operation.CREATE
    submitted_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _target_takes_kind(self) -> JobEnvelope:
        check_supported(self.target, self.kind)
        if self.operation is Operation.ACT and not actions_of(self.target, self.kind):
            raise ValueError(
                f"operation: {self.target.value} takes no actions on {self.kind.value} documents (its API documents "
                "none beyond creating them)"
            )
        return self


def derived_external_id(job_id: str, position: int) -> str:
    """The ExternalId given to a document that came without one: unique, but only within this job.

    Re-submitting the same file makes a new job id and so new ids: protection against re-submission
    needs the producer's own ExternalId.
    """
    return f"{job_id}#{position}"
