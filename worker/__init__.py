"""erpsync: business documents from producers' job messages into ERP APIs, each created exactly once.

The public surface is this module's `__all__`; everything else is internal and may move. The packages, in the
order a document goes through them (each imports only those above it in this list; tests/unit/test_layers.py
holds them to it):

    schemas/              (beside worker/) pure pydantic models: envelopes, ERP documents, their validation
    errors, settings, redaction, backoff, failpoints, fastjson  what every layer uses
    store/                the only owner of Redis state
    observability/        logs and metrics
    archive/              the relational archive beyond Redis's retention; the index restore
    connectors/           one ERP API each, and the HTTP boundary
    pipeline/             intake → batch → send → record, with no Celery
    celery_app/           the Celery app, publishing by task name, bootsteps
    producer/             submit(), file readers, raw-Redis job messages
    webhooks/             signed job webhooks, sent by their own process
    tasks/                (beside worker/) thin Celery task adapters of the pipeline's steps
    ops/                  status, tenants (pause, resume, reauth) and dead letters, for every front end
    console/              the web console (`erpsync console`): ops/ in a browser, with its own login
    devstack/, cli/       the local stack and demo; the `erpsync` command

`celery -A worker worker` finds the Celery app here. It is created on first access, so that importing a part of
this package (the CLI, the producer) does not read settings before it can report their errors clearly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.errors import (
    AmbiguousError,
    ConfigurationError,
    ErpSyncError,
    PermanentError,
    SubmitError,
    TransientError,
    UserError,
)
from worker.settings import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]  # celery ships no type hints

    from worker.producer.submit import submit, wait_for

__all__ = [
    "AmbiguousError",
    "ConfigurationError",
    "ErpSyncError",
    "PermanentError",
    "Settings",
    "SubmitError",
    "TransientError",
    "UserError",
    "app",
    "get_settings",
    "submit",
    "wait_for",
]

if TYPE_CHECKING:
    app: Celery


def __getattr__(name: str) -> Any:
    """The Celery app (`app`, also as `celery` for Celery's own lookup), `submit` and `wait_for`, on first use."""
    if name in ("app", "celery"):
        from worker.celery_app import app as celery_app

        return celery_app
    if name in ("submit", "wait_for"):
        from worker.producer import submit as producer

        return getattr(producer, name)
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
