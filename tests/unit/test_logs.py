"""Structured logs (worker/observability/logs.py): context fields on every line, JSON or key=value, no secrets."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from worker.observability import logs
from worker.redaction import SecretsFilter, secrets_filter


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own (not propagating), so that handlers configured here touch nothing else."""
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex[:8]}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    logger.handlers.clear()
    logger.filters.clear()


def attach(logger: logging.Logger, log_format: str, stream: io.StringIO | None = None) -> io.StringIO:
    stream = stream if stream is not None else io.StringIO()
    logger.addHandler(logging.StreamHandler(stream))
    logs.configure(SimpleNamespace(log_format=log_format), logger)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_and_extra_fields(logger: logging.Logger) -> None:
    out = attach(logger, "json")
    with logs.log_context(job_id="20261120T232423-13d3a55804", tenant="acme", target="softone", kind="order"):
        with logs.log_context(batch_id="b-1", tenant=None):  # None leaves the outer value
            logs.bind(attempt=2)
            logger.info("batch outcome", extra=logs.fields(created=9, failed=1, http_status=None))
        logger.warning("after the batch")
    logger.info("outside")

    first, second, third = lines(out)
    assert first["msg"] == "batch outcome" and first["level"] == "INFO" and first["logger"] == logger.name
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert {k: first[k] for k in ("job_id", "tenant", "target", "kind", "batch_id", "attempt")} == {
        "job_id": "20261120T232423-13d3a55804",
        "tenant": "acme",
        "target": "softone",
        "kind": "order",
        "batch_id": "b-1",
        "attempt": 2,
    }
    assert first["created"] == 9 and first["failed"] == 1 and "http_status" not in first
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]
    assert second["tenant"] == "acme" and "batch_id" not in second and "attempt" not in second
    assert "tenant" not in third and "job_id" not in third


def test_extra_fields_win_over_the_context(logger: logging.Logger) -> None:
    out = attach(logger, "json")
    with logs.log_context(job_id="j-context"):
        logger.error("job not found", extra={"job_id": "j-extra"})
    assert lines(out)[0]["job_id"] == "j-extra"


def test_contexts_of_threads_are_their_own(logger: logging.Logger) -> None:
    out = attach(logger, "json")
    barrier = threading.Barrier(2)

    def work(batch_id: str) -> None:
        with logs.log_context(batch_id=batch_id):
            barrier.wait()  # both contexts are open at once
            logger.info("sending")

    threads = [threading.Thread(target=work, args=(f"b{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(line["batch_id"] for line in lines(out)) == ["b0", "b1"]


def test_text_on_a_terminal_json_elsewhere(logger: logging.Logger) -> None:
    tty = attach(logger, "auto", Tty())
    with logs.log_context(tenant="acme", batch_id="b 7"):
        logger.info("batch outcome", extra=logs.fields(created=3, job_ids=["j1", "j2"]))
    text = tty.getvalue().strip()
    assert not text.startswith("{")
    assert " INFO    " in text and f"{logger.name} batch outcome" in text
    assert 'tenant=acme batch_id="b 7"' in text and "created=3" in text and "job_ids=j1,j2" in text

    assert isinstance(logs.formatter_for("auto", io.StringIO()), logs.JsonFormatter)
    assert isinstance(logs.formatter_for("auto", None), logs.JsonFormatter)
    assert isinstance(logs.formatter_for("json", Tty()), logs.JsonFormatter)
    assert isinstance(logs.formatter_for("text", io.StringIO()), logs.TextFormatter)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_never_reach_the_output_not_even_in_tracebacks(logger: logging.Logger, log_format: str) -> None:
    secret = f"tenant-api-key-{uuid.uuid4().hex}"
    secrets_filter().add_secret(secret)  # what a connector does with its tenant's keys
    out = attach(logger, log_format)
    url = f"https://erp.example/Billing?companyApiKey={secret}&token=tok-{secret[-6:]}&importId=0"
    with logs.log_context(tenant="acme", batch_id="b1"):
        logger.info("calling %s", url, extra={"url": url, "nested": {"header": f"Bearer {secret}"}})
        try:
            raise RuntimeError(f"the ERP echoed {url}")
        except RuntimeError:
            logger.exception("batch outcome")
    text = out.getvalue()
    assert secret not in text and secret[-6:] not in text
    assert "token=***" in text and "companyApiKey=***" in text
    assert "Traceback (most recent call last)" in text and "RuntimeError: the ERP echoed" in text
    if log_format == "json":
        failed = lines(out)[1]
        assert "Traceback" in failed["exc"] and "Traceback" not in failed["msg"]  # its own field
        assert failed["msg"] == "batch outcome" and failed["batch_id"] == "b1"


def test_the_secrets_filter_stays_and_the_context_filter_runs_before_it(logger: logging.Logger) -> None:
    attach(logger, "json")
    handler = logger.handlers[0]
    assert handler.filters[0] is logs.context_filter()
    assert secrets_filter() in handler.filters
    # configuring twice (both Celery signals) adds nothing twice
    logs.configure(SimpleNamespace(log_format="json"), logger)
    assert handler.filters.count(logs.context_filter()) == 1 and handler.filters.count(secrets_filter()) == 1


def test_a_plain_handler_beside_still_gets_the_scrubbed_traceback(logger: logging.Logger) -> None:
    secret = f"fortnox-secret-{uuid.uuid4().hex}"
    secrets_filter().add_secret(secret)
    structured = attach(logger, "json")
    plain = io.StringIO()
    handler = logging.StreamHandler(plain)
    handler.addFilter(SecretsFilter())
    logger.addHandler(handler)  # after the configured one: the record arrives already scrubbed
    try:
        raise ValueError(f"refused {secret}")
    except ValueError:
        logger.exception("token renewal failed")
    assert secret not in structured.getvalue() and secret not in plain.getvalue()
    assert "ValueError: refused ***" in plain.getvalue()


def test_celery_lines_keep_task_ids_and_reprs_but_not_a_second_traceback(logger: logging.Logger) -> None:
    out = attach(logger, "json")
    context = {
        "id": "5b1c",
        "name": "erpsync.send_next",
        "runtime": 0.12,
        "args": "['ticket-5d0c']",
        "kwargs": "{'wake_in_s': 2.5}",
        "traceback": "Traceback ...",
        "return_value": "{'ticket': 'ticket-5d0c', 'batches': 3}",
    }
    logger.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss", context, extra={"data": context})
    line = lines(out)[0]
    assert line["msg"] == "Task erpsync.send_next[5b1c] succeeded in 0.12s"
    assert line["task"] == "erpsync.send_next" and line["task_id"] == "5b1c" and line["runtime_s"] == 0.12
    assert line["kwargs"] == "{'wake_in_s': 2.5}"
    assert "traceback" not in line and "data" not in line and "return_value" not in line


def test_the_celery_hook_configures_what_celery_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.celery_app import bootsteps as celery_app

    monkeypatch.setattr(celery_app.settings, "log_format", "json")
    task_logger = logging.getLogger(f"test.logs.celery.{uuid.uuid4().hex[:8]}")
    stream = io.StringIO()
    task_logger.addHandler(logging.StreamHandler(stream))
    try:
        celery_app._install_redaction(task_logger)
        handler = task_logger.handlers[0]
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert handler.filters[0] is logs.context_filter() and secrets_filter() in handler.filters
    finally:
        task_logger.handlers.clear()
        task_logger.filters.clear()
