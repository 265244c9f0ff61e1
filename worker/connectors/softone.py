"""SoftOne GO connector: token handling, array POSTs of invoices/orders, and the invoice Filter.

Authentication (specs section 2.2): every call carries `companyApiKey`, `connectApiKey` and `token` in
the query string. The token comes from `/Login/Token`; the specs do not document that call, so we call it
with the two API keys in the query string (as every other call takes them) and read the token from a
JSON answer: an object with `Token` (also `token`/`access_token`), or a bare JSON string. Tokens are
cached in Redis, shared by all workers, until shortly before they expire; a 401 renews it once.

The API keys are the tenants file's, unless `erpsync tenants reauth` stored newer ones in Redis (the precedence in
worker/store/tokens.py's docstring); they are read once per connector, as its first call needs them. Keys the login
refuses (401), or a 401 with a token issued moments ago, are AuthorizationRefused: the pipeline pauses the tenant
(worker/pipeline/retry.py) rather than failing its documents.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from schemas import DocumentKind, FilteredInvoice, InvoiceFilter, OperationResult
from worker.backoff import backoff_seconds
from worker.connectors.base import Connector, Created, LookupRequest
from worker.connectors.http import classify_exception, classify_status
from worker.connectors.reconcile import Settlement, lookalike_key, reconcile, settle
from worker.errors import (
    AmbiguousError,
    AuthorizationRefused,
    BatchRejected,
    ConnectFailed,
    PermanentError,
    RateLimited,
    TransientError,
    WaitingForRetryAfter,
)
from worker.redaction import redact_url, secrets_filter
from worker.settings import Settings
from worker.store.errors import StoreUnavailable

log = logging.getLogger(__name__)


class SoftOneConnector(Connector):
    """Talks to one tenant's SoftOne GO company: array POSTs, invoices looked up with the Filter."""

    target = "softone"

    def setup(self) -> None:
        tenant = self.tenant
        assert tenant.company_api_key is not None and tenant.connect_api_key is not None  # TenantConfig checks
        self._file_keys = {
            "company_api_key": tenant.company_api_key.get_secret_value(),
            "connect_api_key": tenant.connect_api_key.get_secret_value(),
        }
        for value in self._file_keys.values():
            secrets_filter().add_secret(value)
        self._keys: dict[str, str] | None = None  # the keys in use: the file's or Redis's, read on first use

    # ----- authentication
    def _key_params(self) -> dict[str, str]:
        """The API keys as query parameters. StoreUnavailable when Redis cannot say which keys are current."""
        if self._keys is None:
            self._keys = {name: self.credential(name, value) for name, value in self._file_keys.items()}
        return {"companyApiKey": self._keys["company_api_key"], "connectApiKey": self._keys["connect_api_key"]}

    def token(self) -> str:
        """A valid token: the shared cached one, or a new one (one worker logs in, the others wait)."""
        return self.shared_token(self._login_for_all)

    def _login_for_all(self) -> str:
        token, ttl = self._login()
        self.tokens.save(token, ttl)
        return token

    def _login(self) -> tuple[str, int]:
        url = self.base_url + self.settings.softone_token_path
        params = self._key_params()
        try:
            response = self.client.post(url, params=params)
        except httpx.HTTPError as exc:
            error = classify_exception(exc, url)
            # A login creates nothing: one that may have happened is simply repeated later.
            if isinstance(error, AmbiguousError):
                error = ConnectFailed(str(error))
            raise error from None
        if response.status_code == 401:
            raise AuthorizationRefused(
                f"{url} refused tenant {self.tenant.name!r}'s API keys (401); an operator must give valid ones "
                "(`erpsync tenants reauth`)",
                status=401,
                reason="SoftOne refused the API keys (401)",
            )
        refused = classify_status(response)
        if refused is not None:
            raise refused
        token, expires_in = _read_token(response)
        secrets_filter().add_secret(token)
        ttl = self.settings.token_ttl_seconds
        if expires_in:
            ttl = max(10, min(ttl, int(expires_in) - 60))
        log.info("softone login ok", extra={"tenant": self.tenant.name, "token_ttl_s": ttl})
        return token, ttl

    def _call(self, path: str, body: Any, request_id: str | None = None) -> httpx.Response:
        """POST with auth; on 401 renew the token once. Errors come out as our types."""
        url = self.base_url + path
        content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        self._respect_retry_after(url)
        fresh: tuple[str, int] | None = None
        for attempt in (1, 2):
            try:
                # First the shared token; after a 401 one we log in for ourselves, so that the renewed
                # token's first use is this very request (not another worker's, which could spend it).
                token = self.token() if fresh is None else fresh[0]
                keys = self._key_params()
            except StoreUnavailable as exc:
                raise ConnectFailed(f"token cache unavailable ({exc.kind}); nothing was sent") from None
            params = {**keys, "token": token, "importId": "0", "specialFunctionalities": ""}
            self.take_turn()
            started = time.perf_counter()
            try:
                # Idempotency-Key names the logical request, so retries can be told apart from identical
                # requests of other batches (the sandbox's Retry-After audit uses it; SoftOne ignores it).
                headers = {"Content-Type": "application/json"} | ({"Idempotency-Key": request_id} if request_id else {})
                response = self.client.post(url, params=params, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise classify_exception(exc, url) from None
            log.info(
                "softone POST %s answered %s",
                redact_url(response.request.url),
                response.status_code,
                extra={
                    "http_status": response.status_code,
                    "bytes": len(content),
                    "duration_ms": round((time.perf_counter() - started) * 1000),
                },
            )
            if response.status_code == 401:
                self.invalidate(token)
                if attempt == 1:
                    fresh = self._login()
                    continue
                raise AuthorizationRefused(
                    f"POST {redact_url(url)} answered 401 with a fresh token: tenant {self.tenant.name!r}'s "
                    "credentials are refused",
                    status=401,
                    reason="SoftOne answered 401 with a fresh token",
                )
            if fresh is not None:
                with contextlib.suppress(StoreUnavailable):  # share it now that it works; never fail the POST
                    self.tokens.offer(*fresh)
            error = classify_status(response)
            if isinstance(error, RateLimited) and error.retry_after:
                # Retry-After speaks to the client, not to one request: every worker of this tenant waits.
                self.tokens.pause(error.retry_after)
            if error is not None:
                raise error
            return response
        raise AssertionError("unreachable")

    def _respect_retry_after(self, url: str) -> None:
        """Raise RateLimited (nothing sent) while the ERP's last Retry-After for this tenant runs."""
        try:
            until = self.tokens.paused_until()
        except StoreUnavailable:
            return
        remaining = until - time.time() if until else 0.0
        if remaining > 0:
            raise WaitingForRetryAfter(
                f"waiting {remaining:.1f}s more as the ERP asked (Retry-After); nothing sent", retry_after=remaining
            )

    # ----- documents
    def path_for(self, kind: DocumentKind) -> str:
        if kind is DocumentKind.CUSTOMER_INVOICE:
            return self.settings.softone_invoice_path
        return self.settings.softone_order_path

    @classmethod
    def max_batch_docs(cls, settings: Settings, kind: DocumentKind) -> int:
        """Invoices go in arrays of up to ERPSYNC_BATCH_MAX_DOCS; orders one per request.

        Orders have no Filter, so nothing tells which orders of an array the ERP saved when its answer is lost or
        it rejects the array part-way (it saves those before the rejected one, and returns no Keys): an array of
        50 would leave up to 50 orders `unknown`, or resent into duplicates. One order per request makes a lost
        answer cost that one order (`unknown`) and a rejection fail that one order with the ERP's message, for
        50 times the requests (measured: docs/guarantees.md, "Failures")."""
        return settings.batch_max_docs if kind is DocumentKind.CUSTOMER_INVOICE else 1

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str | None = None) -> list[Created]:
        """POST an array of documents; the Keys (and, for orders, numbers) of a fully successful call.

        Raises BatchRejected for `Success: false` (documents before the rejected one are saved), and the
        error types of worker/connectors/http.py for everything else.
        """
        response = self._call(self.path_for(kind), body, request_id)
        result = _read_result(response)
        if not result.success:
            raise BatchRejected(
                result.error_message or f"ERP answered Success: false (ErrorNumber {result.error_number})",
                error_number=result.error_number,
            )
        numbers: list[str | None] = list(result.strings)
        if len(numbers) != len(result.keys):
            numbers = [None] * len(result.keys)  # invoices come back with Strings: [] (spec example)
        return [Created(key, number) for key, number in zip(result.keys, numbers, strict=True)]

    @classmethod
    def no_update(cls, kind: DocumentKind) -> str:
        # SoftOne GO's public API documentation covers creating invoices and orders, nothing else.
        what = (
            "credit the invoice in SoftOne GO" if kind is DocumentKind.CUSTOMER_INVOICE else "change it in SoftOne GO"
        )
        return (
            f"SoftOne GO's API creates {kind.value} documents but has no update of them: {what} and submit the "
            "correction under a new ExternalId"
        )

    def can_look_up(self, kind: DocumentKind) -> bool:
        # Only invoices have a Filter in the specs; an order's open outcome stays `unknown`.
        return kind is DocumentKind.CUSTOMER_INVOICE

    def lookalike_keys(self, kind: DocumentKind, docs: Sequence[dict[str, Any]]) -> list[str] | None:
        """Invoices are found by their content (worker/connectors/reconcile.py)."""
        return [lookalike_key(doc) for doc in docs] if kind is DocumentKind.CUSTOMER_INVOICE else None

    def look_up(self, request: LookupRequest) -> Settlement:
        """Match the batch to the invoices of its days by content (worker/connectors/reconcile.py): the Filter returns
        no ExternalId."""
        days = sorted(str(d.get("InvoiceDate", ""))[:10] for d in request.docs)
        try:
            invoices = self.find_invoices(days[0], days[-1], request_id=request.request_id)
        except AmbiguousError as exc:
            # The Filter only reads: a lost answer to it is simply asked again.
            raise TransientError(str(exc), status=exc.status) from None
        known = request.known_keys(inv.invoice_id for inv in invoices)
        found = reconcile(request.docs, invoices, known, request.high_water)
        return settle(found, len(request.docs), rejected=request.rejected)

    def find_invoices(self, date_from: str, date_to: str, request_id: str | None = None) -> list[FilteredInvoice]:
        """Every invoice dated within [date_from, date_to] (inclusive), page by page."""
        page_size = self.settings.softone_filter_page_size
        found: list[FilteredInvoice] = []
        for page in range(1, 10_000):
            criteria = InvoiceFilter(
                invoice_date_from=date_from,
                invoice_date_to=date_to,
                include_preliminary=True,  # invoices created through the API may still be preliminary
                page_number=page,
                page_nr_of_records=page_size,
            )
            batch = self._filter_page(criteria, f"{request_id}:filter:{page}" if request_id else None)
            found.extend(batch)
            if len(batch) < page_size:
                return found
        raise PermanentError(f"Filter kept returning full pages beyond {len(found)} invoices")

    def _filter_page(self, criteria: InvoiceFilter, request_id: str | None, tries: int = 5) -> list[FilteredInvoice]:
        """One Filter page, retried here on transient or lost answers: it only reads, and a reconciliation
        that pages through a busy day should not start over because one page met a fault."""
        for attempt in range(1, tries + 1):
            try:
                return self.filter_invoices(criteria, request_id)
            except (TransientError, AmbiguousError) as exc:
                if attempt == tries:
                    raise
                retry_after = exc.retry_after if isinstance(exc, TransientError) else None
                time.sleep(backoff_seconds(attempt, base=0.25, cap=5.0, retry_after=retry_after))
        raise AssertionError("unreachable")

    def filter_invoices(self, criteria: InvoiceFilter, request_id: str | None = None) -> list[FilteredInvoice]:
        """Invoices matching `criteria` (Billing/CustomerInvoices/Filter)."""
        response = self._call(self.settings.softone_filter_path, criteria.to_wire(), request_id)
        try:
            data = response.json()
            if not isinstance(data, list):
                raise ValueError("not an array")
            return [FilteredInvoice.model_validate(item) for item in data]
        except (ValueError, ValidationError) as exc:
            raise PermanentError(f"Filter answer is not an array of invoices: {str(exc)[:200]}") from None


def _read_token(response: httpx.Response) -> tuple[str, float | None]:
    try:
        data = response.json()
    except ValueError:
        data = response.text.strip().strip('"')
    if isinstance(data, str) and data:
        return data, None
    if isinstance(data, dict):
        for name in ("Token", "token", "access_token", "AccessToken"):
            value = data.get(name)
            if isinstance(value, str) and value:
                expires = data.get("ExpiresIn") or data.get("expires_in")
                try:
                    return value, float(expires) if expires is not None else None
                except (TypeError, ValueError):
                    return value, None
    raise PermanentError("the ERP's /Login/Token answer carries no token")


def _read_result(response: httpx.Response) -> OperationResult:
    try:
        return OperationResult.model_validate(response.json())
    except (ValueError, ValidationError):
        # 2xx but not an operation result: the ERP did something we cannot read. Treat as unknown.
        raise AmbiguousError(
            f"answer {response.status_code} is not a SoftOne operation result: {response.text[:200]!r}"
        ) from None
