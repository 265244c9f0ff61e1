"""Structured logs: every line about a job, batch or tenant carries its ids, as JSON lines or key=value text.

- `log_context(job_id=..., tenant=..., batch_id=...)` (a context manager on contextvars, so it follows the
  task in both the prefork and the threads pool) sets fields that `ContextFilter` copies onto every record
  logged inside it; `bind()` adds fields to the innermost context (e.g. the attempt, once it is known).
  Inside a Celery task, the task's name and id are added too.
- `JsonFormatter`: one JSON object per line: ts (ISO 8601, UTC), level, logger, msg, the context fields, the
  record's `extra=` fields, and exc (the traceback, as a string). `extra=fields(created=3, ...)` passes
  fields whose names a LogRecord already uses for itself (`created`, `name`, `module`...).
- `TextFormatter`: `ts level logger msg key=value ...` for a terminal.
- `configure(settings, logger)` puts both on the handlers Celery sets up (worker/celery_app/bootsteps.py): format
  `auto` is text when the handler writes to a TTY, else JSON; Celery's own lines take the same path.

Secrets: worker/redaction.py's SecretsFilter stays on every handler. `ContextFilter` runs before it and turns
an exception into scrubbed text (`exc_text`) so that the traceback is masked too and stays a field of its own
in JSON; the formatters scrub every string they write once more, whatever a record carries.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from worker.redaction import secrets_filter

#: Context fields in the order lines show them (others follow in the order they were set).
CONTEXT_ORDER = ("job_id", "tenant", "target", "kind", "batch_id", "attempt", "task", "task_id")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_FIELDS = "_erpsync_fields"
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("erpsync_log_context", default=_EMPTY)

# Attributes every LogRecord has: whatever else a record carries came from `extra=` or the context filter.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "data",  # Celery's `extra={"data": context}`: read field by field in `_celery_fields`
    "task_name",  # set by Celery's TaskFormatter
    "_erpsync_context",
}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Within the block, every log record carries `fields` (None values are left out)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context until the enclosing `log_context` block ends (use inside one)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a line's own fields, any names allowed (`extra={"created": 3}` would clash with
    LogRecord.created and raise)."""
    return {_FIELDS: values}


def current() -> dict[str, Any]:
    """The fields of the current context."""
    return dict(_CONTEXT.get())


def _current_task() -> tuple[str, str] | None:
    try:
        from celery._state import get_current_task  # type: ignore[import-untyped]  # celery ships no type hints
    except ImportError:  # pragma: no cover - celery is a dependency; logs work without it
        return None
    task = get_current_task()
    if task is None or task.request is None or not task.request.id:
        return None
    return task.name, task.request.id


class ContextFilter(logging.Filter):
    """Copies the log context (and the running Celery task) onto each record, and scrubs its exception.

    Fields given with `extra=` win over the context's. Safe to run more than once on a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_erpsync_context", False):
            values = dict(_CONTEXT.get())
            task = _current_task()
            if task is not None:
                values.setdefault("task", task[0])
                values.setdefault("task_id", task[1])
            for name, value in values.items():
                if name not in record.__dict__:
                    setattr(record, name, value)
            record._erpsync_context = True
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, scrubbed, as the text every formatter appends (exc_text), and drop the
            # live exception: SecretsFilter would otherwise fold it into the message.
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = secrets_filter().scrub(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = secrets_filter().scrub(record.exc_text)
        return True


def _celery_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Ids and reprs from Celery's own lines (`extra={"data": {...}}`): received, succeeded, retry, failed."""
    data = record.__dict__.get("data")
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for source, name in (("name", "task"), ("id", "task_id"), ("runtime", "runtime_s")):
        if data.get(source) is not None:
            out[name] = data[source]
    # args/kwargs are the task messages' argsrepr/kwargsrepr: ids and counts only (see worker/pipeline/queue.py).
    for name in ("args", "kwargs"):
        if data.get(name):
            out[name] = data[name]
    return out


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """ts, level, logger, msg, context, extras and exc of a record, every string scrubbed of secrets."""
    scrub = secrets_filter().scrub
    out: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "msg": scrub(record.getMessage()),
    }
    extras = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")}
    bundled = record.__dict__.get(_FIELDS)
    if isinstance(bundled, Mapping):
        extras.update(bundled)
    for name, value in _celery_fields(record).items():
        extras.setdefault(name, value)
    for name in CONTEXT_ORDER:
        if extras.get(name) is not None:
            out[name] = _clean(extras.pop(name), scrub)
    for name, value in extras.items():
        if value is not None and name not in out:
            out[name] = _clean(value, scrub)
    if record.exc_text:
        out["exc"] = scrub(record.exc_text)
    elif record.exc_info and record.exc_info[1] is not None:  # a handler without ContextFilter
        out["exc"] = scrub(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        out["stack"] = scrub(record.stack_info)
    return out


def _clean(value: Any, scrub: Callable[[str], str]) -> Any:
    """JSON-able and scrubbed: strings masked, containers walked, anything else as its str()."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, scrub) for v in value]
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (non-ASCII kept as is)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record_fields(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`2026-11-20T23:24:23.123Z INFO worker.pipeline.record batch outcome batch_id=... tenant=acme` and the
    traceback."""

    def format(self, record: logging.LogRecord) -> str:
        values = record_fields(record)
        head = f"{values.pop('ts')} {values.pop('level'):<7} {values.pop('logger')} {values.pop('msg')}"
        exc = values.pop("exc", None)
        stack = values.pop("stack", None)
        line = " ".join([head, *(f"{k}={_text_value(v)}" for k, v in values.items())])
        return "\n".join(part for part in (line, exc, stack) if part)


def _text_value(value: Any) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if not text or any(c in text for c in ' ="\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def formatter_for(log_format: str, stream: IO[str] | None) -> logging.Formatter:
    """The formatter for a handler writing to `stream`: `auto` means text on a terminal, JSON otherwise."""
    if log_format == "text":
        return TextFormatter()
    if log_format == "json":
        return JsonFormatter()
    try:
        tty = bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return TextFormatter() if tty else JsonFormatter()


_CONTEXT_FILTER = ContextFilter()


def context_filter() -> ContextFilter:
    return _CONTEXT_FILTER


def _first(filters: list[Any], item: Any) -> None:
    """Put `item` first among `filters` (before the secrets filter, see the module docstring)."""
    if item in filters:
        filters.remove(item)
    filters.insert(0, item)


def configure(settings: object, logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (root by default) the context filter and the structured formatter of
    `settings.log_format` (Settings, or anything with a `log_format`; `auto` without one).

    The secrets filter is installed too (it may be already: worker.redaction.install is idempotent).
    """
    from worker import redaction

    target = logger or logging.getLogger()
    redaction.install(target)
    log_format = getattr(settings, "log_format", "auto")
    for handler in target.handlers:
        _first(handler.filters, _CONTEXT_FILTER)
        handler.setFormatter(formatter_for(log_format, getattr(handler, "stream", None)))
    _first(target.filters, _CONTEXT_FILTER)


def setup(settings: object, level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Structured logging for a process Celery does not set up (the CLI's long-running commands): a stderr
    handler on the root logger if it has none, then `configure`."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    root.setLevel(level)
    configure(settings, root)
