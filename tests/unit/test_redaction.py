"""Secrets never reach log output: URL parameters, URL passwords, and known secret values."""

from __future__ import annotations

import logging

from worker.redaction import SecretsFilter, redact, redact_url


def test_softone_query_string_is_redacted() -> None:
    url = (
        "https://apiexternal.softone.se/Economy/Billing/CustomerInvoices?companyApiKey=abc123"
        "&connectApiKey=def456&token=tok789&importid=0&specialfunctionalities="
    )
    clean = redact_url(url)
    assert "abc123" not in clean and "def456" not in clean and "tok789" not in clean
    assert "importid=0" in clean and "companyApiKey=***" in clean


def test_redis_password_is_redacted() -> None:
    assert redact("rediss://user:s3cret@redis.example:6380/0") == "rediss://user:***@redis.example:6380/0"


def test_filter_scrubs_messages_args_and_tracebacks(caplog: object) -> None:
    logger = logging.getLogger("test.redaction")
    handler_filter = SecretsFilter(["my-company-key-value"])
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    handler.addFilter(handler_filter)
    logger.addHandler(handler)
    try:
        logger.warning("calling %s", "http://x/?token=abc&companyApiKey=my-company-key-value")
        try:
            raise RuntimeError("boom my-company-key-value")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(r.getMessage() for r in records)
    assert "abc" not in text and "my-company-key-value" not in text
    assert "boom ***" in text  # the traceback was kept, scrubbed
