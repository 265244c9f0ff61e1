"""Job webhooks: when a job of a tenant that names a webhook (its `webhook_url` and `webhook_secret` in the tenants
file) reaches a final status, its summary is POSTed there, signed, by a process of its own (`erpsync webhooks run`).

signing.py  the headers of a POST (timestamp, HMAC-SHA256 signature, delivery id, event) and `verify` for receivers
payload.py  the job's summary sent: a whitelist of its fields, never documents or credentials, serialized stably
sender.py   the sender: job events into deliveries, due deliveries sent concurrently with a timeout, retried with
            backoff, given up after the last attempt; the pipeline never waits for it

Redis state (the job-events stream, deliveries due and given up) is worker/store/webhooks.py's.
"""

from __future__ import annotations

from worker.webhooks.payload import job_payload, serialize
from worker.webhooks.sender import WebhookSender, retry_delay
from worker.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    verify,
)

__all__ = [
    "DELIVERY_HEADER",
    "EVENT",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSender",
    "job_payload",
    "retry_delay",
    "serialize",
    "sign",
    "signed_headers",
    "verify",
]
