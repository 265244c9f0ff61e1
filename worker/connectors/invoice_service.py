"""Invoice-service connector: `POST /invoices` with a Bearer token, one invoice per request.

The created id is the answer's `id` (e.g. `I.111225694`), kept with the invoice number. The spec documents
no way to look an invoice up, so an invoice whose POST got no usable answer ends `unknown` for an operator
(never resent blindly). The spec documents no error body either: a 4xx fails the invoice with the answer's
text (the sandbox's `{"errors": [{"field", "message"}]}` is rendered field by field).

Its token is static: a 401 means the service refuses it, so it is AuthorizationRefused and the pipeline pauses the
tenant until an operator gives a new one (`erpsync tenants reauth`, stored in Redis with the tenants file's
precedence: worker/store/tokens.py) or edits the tenants file and resumes it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from schemas import DocumentKind
from worker.connectors.base import Connector, Created, single_document
from worker.connectors.http import classify_exception, classify_status
from worker.errors import AmbiguousError, AuthorizationRefused, RequestRejected
from worker.redaction import redact_url, secrets_filter

log = logging.getLogger(__name__)


class InvoiceServiceConnector(Connector):
    """Talks to one client of the invoice service."""

    target = "invoiceservice"

    def setup(self) -> None:
        tenant = self.tenant
        assert tenant.api_token is not None  # TenantConfig checks
        self._file_token = tenant.api_token.get_secret_value()
        secrets_filter().add_secret(self._file_token)
        self._token: str | None = None  # the token in use: the file's or Redis's (a reauth), read on first use

    def _api_token(self) -> str:
        """The API token to send. StoreUnavailable when Redis cannot say which one is current."""
        if self._token is None:
            self._token = self.credential("api_token", self._file_token)
        return self._token

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str | None = None) -> list[Created]:
        url = self.base_url + self.settings.invoice_service_path
        headers = {"Authorization": f"Bearer {self._api_token()}", "Content-Type": "application/json"}
        if request_id:
            headers["Idempotency-Key"] = request_id
        self.take_turn()
        started = time.perf_counter()
        try:
            response = self.client.post(url, content=single_document(body), headers=headers)
        except httpx.HTTPError as exc:
            raise classify_exception(exc, url) from None
        log.info(
            "invoiceservice POST %s answered %s",
            redact_url(url),
            response.status_code,
            extra={"http_status": response.status_code, "duration_ms": round((time.perf_counter() - started) * 1000)},
        )
        if response.status_code == 401:
            raise AuthorizationRefused(
                f"the invoice service refused tenant {self.tenant.name!r}'s token (401); an operator must give a "
                "valid one (`erpsync tenants reauth`)",
                status=401,
                reason="the invoice service refused the API token (401)",
            )
        error = classify_status(response)
        if isinstance(error, RequestRejected):
            raise RequestRejected(
                f"the invoice service rejected the invoice: {_reasons(response)}", status=error.status
            )
        if error is not None:
            raise error
        try:
            data = response.json()
            key, number = str(data["id"]), data.get("invoiceNumber")
        except (ValueError, KeyError, TypeError):
            raise AmbiguousError(
                f"the invoice service answered {response.status_code} without an invoice id: {response.text[:200]!r}"
            ) from None
        return [Created(key, str(number) if number is not None else None)]


def _reasons(response: httpx.Response) -> str:
    """`field: message; ...` from an `{"errors": [...]}` body, else the answer's text."""
    try:
        data: Any = response.json()
        errors = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
                for e in errors
                if isinstance(e, dict)
            )
    except ValueError:
        pass
    return response.text[:300] or f"status {response.status_code}"
