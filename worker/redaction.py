"""Keep secrets out of logs, errors and results.

SoftOne takes `companyApiKey`, `connectApiKey` and `token` in the query string, so every URL is a
secret until redacted. `SecretsFilter` is installed on the log handlers of every erpsync process: it
redacts URLs in any log record and masks the literal values of configured secrets wherever they appear.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

SECRET_PARAMS = (
    "companyapikey",
    "connectapikey",
    "token",
    "access_token",
    "refresh_token",
    "password",
    "client_secret",
    "apikey",
    "api_key",
)
MASK = "***"

_PARAM_RE = re.compile(r"(?i)\b(" + "|".join(SECRET_PARAMS) + r")=([^&\s#\"']*)")
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@/\s]+)@")


def redact(text: str) -> str:
    """Mask secret query parameters and passwords in URLs found anywhere in `text`."""
    text = _PARAM_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _USERINFO_RE.sub(lambda m: f"{m.group(1)}{MASK}@", text)


def redact_url(url: object) -> str:
    """A URL (str or httpx.URL) safe to log."""
    return redact(str(url))


class SecretsFilter(logging.Filter):
    """Rewrites log records so that neither secret parameters nor known secret values get out."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add_secret(self, value: str) -> None:
        if value and len(value) >= 4 and value not in self._secrets:
            self._secrets = sorted([*self._secrets, value], key=len, reverse=True)

    def scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters render the exception later; render it now, scrubbed, and drop the original.
            exc_text = logging.Formatter().formatException(record.exc_info)
            clean = f"{clean}\n{self.scrub(exc_text)}"
            record.exc_info = None
            record.exc_text = None
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


_FILTER = SecretsFilter()


def secrets_filter() -> SecretsFilter:
    """The process-wide filter (secrets learnt at run time, e.g. fresh tokens, are added to it)."""
    return _FILTER


def install(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (root by default).

    httpx's own request log (full URLs) is silenced where clients are made:
    worker.connectors.http.quieten_httpx_logging.
    """
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)
