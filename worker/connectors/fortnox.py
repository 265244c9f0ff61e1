"""Fortnox connector: OAuth2 bearer tokens shared by all workers, one document per request, look-ups by
ExternalInvoiceReference1 (invoices, orders) or ArticleNumber (articles).

Authentication. Access tokens live an hour and are cached in Redis for every worker until
`fortnox_token_renew_seconds` before they expire. Two ways to get one:
- authorization-code tenants (`refresh_token` in the tenants file): a refresh token is SINGLE-USE, and its
  successor comes back with the new access token. One worker renews, under a Redis lock, and stores the new
  pair in one transaction before anyone uses it; the others wait for the lock and then find it. The current
  refresh token lives in Redis (worker/store/tokens.py, no expiry) with the fingerprint of the tenants file's
  one it superseded: Redis's is used until the tenants file holds another refresh token (an operator edited it:
  the file's is newer) — the precedence in worker/store/tokens.py's docstring. `erpsync tenants reauth` stores a
  new one the same way. If a renewal's answer is lost after Fortnox spent the old refresh token, nothing can
  renew any more: the error says an operator must authorise the integration again.
- service accounts (`tenant_id`): the client-credentials grant, asked again (under the same lock) when the
  token is due. Its client secret follows the same precedence (a reauth may replace it).
A 401 on a call drops the cached token (unless another worker replaced it already) and renews once.

A refusal of the authorisation itself — the token endpoint refusing the refresh token or the client credentials,
a lost renewal answer (the refresh token may be spent), a 401 with a token issued moments ago — is
AuthorizationRefused: the pipeline pauses the tenant (worker/pipeline/retry.py) rather than failing its documents.

Rate limit: Fortnox allows 25 requests per access token in any sliding 5 s and answers 429 beyond it;
every request (POSTs and look-ups) takes a turn from the tenant's shared limiter first (worker/store/ratelimit.py).

Errors: Fortnox answers `{"ErrorInformation": {"Error", "Message", "Code"}}`, keys capitalised or not;
the message and code go into the document's reason (e.g. 2004167: an account is needed for a custom VAT
rate with EasyVat).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast
from urllib.parse import quote

import httpx

from schemas import DocumentKind
from schemas.fortnox import parse_error
from worker.connectors.base import Connector, Created, LookupRequest, single_document
from worker.connectors.http import classify_exception, classify_status
from worker.connectors.reconcile import Settlement
from worker.errors import AmbiguousError, AuthorizationRefused, ConnectFailed, PermanentError, RequestRejected
from worker.redaction import redact_url, secrets_filter
from worker.store.errors import StoreUnavailable
from worker.store.tokens import REFRESH_TOKEN

log = logging.getLogger(__name__)

WRAPPERS = {
    DocumentKind.CUSTOMER_INVOICE: ("Invoice", "Invoices"),
    DocumentKind.ORDER: ("Order", "Orders"),
    DocumentKind.OFFER: ("Offer", "Offers"),
    DocumentKind.ARTICLE: ("Article", "Articles"),
}


class FortnoxConnector(Connector):
    """Talks to one Fortnox account."""

    target = "fortnox"
    token_lock_seconds = 60

    def setup(self) -> None:
        tenant, settings = self.tenant, self.settings
        assert tenant.client_id is not None and tenant.client_secret is not None  # TenantConfig checks
        self.auth_url = (tenant.auth_url or tenant.base_url).rstrip("/") + settings.fortnox_token_path
        self._secret = tenant.client_secret.get_secret_value()
        secrets_filter().add_secret(self._secret)
        if tenant.refresh_token is not None:
            secrets_filter().add_secret(tenant.refresh_token.get_secret_value())

    # ----- authentication
    def token(self) -> str:
        """A valid access token: the shared cached one, or a new one (one worker renews, the others wait)."""
        return self.shared_token(self._renew)

    def _renew(self) -> str:
        """Ask the OAuth server for a new access token and store it (with its refresh token) for everyone.
        Called with the renewal lock held."""
        file_refresh = self.tenant.refresh_token.get_secret_value() if self.tenant.refresh_token else None
        secret = self.credential("client_secret", self._secret)
        if self.tenant.tenant_id is not None:
            form = {"grant_type": "client_credentials"}
            headers = {"TenantId": self.tenant.tenant_id}
            refresh = None
        else:
            assert file_refresh is not None  # TenantConfig: a tenant without tenant_id has a refresh token
            refresh = self.credential(REFRESH_TOKEN, file_refresh)
            form = {"grant_type": "refresh_token", "refresh_token": refresh}
            headers = {}
        # No take_turn(): the OAuth server is not the API whose requests Fortnox limits per token.
        try:
            response = self.client.post(
                self.auth_url, data=form, headers=headers, auth=(self.tenant.client_id or "", secret)
            )
        except httpx.HTTPError as exc:
            error = classify_exception(exc, self.auth_url)
            if isinstance(error, AmbiguousError) and refresh is not None:
                raise AuthorizationRefused(
                    f"the answer to tenant {self.tenant.name!r}'s token renewal was lost; if Fortnox spent the "
                    "refresh token, an operator must authorise the integration again (`erpsync tenants reauth`); "
                    "if not, `erpsync tenants resume` goes on with it",
                    reason="token renewal answer lost (refresh token maybe spent)",
                ) from None
            if isinstance(error, AmbiguousError):
                error = ConnectFailed(str(error))  # a client-credentials grant creates nothing: ask again
            raise error from None
        if response.status_code in (400, 401):
            reason = _oauth_error(response)
            what = "refresh token" if refresh is not None else "client credentials"
            raise AuthorizationRefused(
                f"Fortnox refused tenant {self.tenant.name!r}'s {what} ({response.status_code} {reason}); "
                "an operator must authorise the integration again (`erpsync tenants reauth`)",
                status=response.status_code,
                reason=f"Fortnox refused the {what} ({response.status_code} {reason})"[:200],
            )
        refused = classify_status(response)
        if refused is not None:
            raise refused
        try:
            data = response.json()
            access = str(data["access_token"])
            expires_in = int(data.get("expires_in") or 3600)
            new_refresh = data.get("refresh_token")
        except (ValueError, KeyError, TypeError):
            raise PermanentError("Fortnox's token answer carries no access_token") from None
        secrets_filter().add_secret(access)
        ttl = max(10, expires_in - self.settings.fortnox_token_renew_seconds)
        if new_refresh:
            secrets_filter().add_secret(str(new_refresh))
        # With its new refresh token in one transaction (refresh tokens live 45 days; used before that).
        self.tokens.save(access, ttl, refresh=str(new_refresh) if new_refresh else None, file_refresh=file_refresh)
        log.info(
            "fortnox token renewed", extra={"tenant": self.tenant.name, "grant": form["grant_type"], "token_ttl_s": ttl}
        )
        return access

    def _request(
        self, method: str, path: str, content: bytes | None = None, request_id: str | None = None
    ) -> httpx.Response:
        """One API call with a bearer token, under the rate limit; a 401 renews the token once."""
        url = self.base_url + path
        for attempt in (1, 2):
            try:
                token = self.token()
            except StoreUnavailable as exc:
                raise ConnectFailed(f"token cache unavailable ({exc.kind}); nothing was sent") from None
            self.take_turn()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            if request_id:
                headers["Idempotency-Key"] = request_id
            started = time.perf_counter()
            try:
                response = self.client.request(method, url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                raise classify_exception(exc, url) from None
            log.info(
                "fortnox %s %s answered %s",
                method,
                redact_url(url),
                response.status_code,
                extra={
                    "http_status": response.status_code,
                    "bytes": len(content or b""),
                    "duration_ms": round((time.perf_counter() - started) * 1000),
                },
            )
            if response.status_code == 401:
                self.invalidate(token)
                if attempt == 1:
                    continue
                raise AuthorizationRefused(
                    f"{method} {redact_url(url)} answered 401 with a fresh token: tenant {self.tenant.name!r}'s "
                    "authorisation is refused",
                    status=401,
                    reason="Fortnox answered 401 with a fresh access token",
                )
            return response
        raise AssertionError("unreachable")

    # ----- documents
    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str | None = None) -> list[Created]:
        """POST one document (a one-document batch) wrapped as Fortnox wants it: `{"Invoice": {...}}`."""
        wrapper = WRAPPERS[kind][0]
        content = b'{"' + wrapper.encode() + b'":' + single_document(body) + b"}"
        response = self._request("POST", self.settings.fortnox_paths[kind.value], content, request_id)
        _raise_for_status(response)
        try:
            created = response.json()[wrapper]
            key = created["ArticleNumber" if kind is DocumentKind.ARTICLE else "DocumentNumber"]
        except (ValueError, KeyError, TypeError):
            raise AmbiguousError(
                f"Fortnox answered {response.status_code} without the created {wrapper}: {response.text[:200]!r}"
            ) from None
        return [Created(str(key), str(key))]

    @classmethod
    def can_update(cls, kind: DocumentKind) -> bool:
        # The spec documents an update (PUT) of invoices, orders, offers and articles.
        return True

    def update_document(self, kind: DocumentKind, key: str, body: bytes, request_id: str) -> Created:
        """PUT the document's new content to `/3/<kind>/<DocumentNumber>` (articles: its ArticleNumber).

        Sent whole, without RowIds: Fortnox then maps the rows in order and keeps only those given (spec: "All rows
        that should remain on the invoice needs to be provided"); other properties not provided "will be left
        unchanged", so a field the correction leaves out keeps its old value. Either way the same PUT twice leaves
        the same document, and an update whose answer was lost is simply sent again. A booked, sent or cancelled
        invoice refuses changes: the reason then says to credit it instead."""
        wrapper = WRAPPERS[kind][0]
        content = b'{"' + wrapper.encode() + b'":' + single_document(body) + b"}"
        path = f"{self.settings.fortnox_paths[kind.value]}/{quote(key, safe='')}"
        response = self._request("PUT", path, content, request_id)
        try:
            _raise_for_status(response)
        except RequestRejected as exc:
            if kind is DocumentKind.CUSTOMER_INVOICE and response.status_code == 400:
                raise RequestRejected(
                    f"{exc} — an invoice that is booked, sent or cancelled cannot be changed: credit it in Fortnox "
                    "and submit the correction under a new ExternalId",
                    status=exc.status,
                ) from None
            raise
        try:
            number = response.json()[wrapper]["ArticleNumber" if kind is DocumentKind.ARTICLE else "DocumentNumber"]
        except (ValueError, KeyError, TypeError):
            raise AmbiguousError(
                f"Fortnox answered {response.status_code} without the updated {wrapper}: {response.text[:200]!r}"
            ) from None
        return Created(str(number), str(number))

    # ----- actions (schemas/actions.py)
    @classmethod
    def can_verify(cls, kind: DocumentKind, action: str) -> bool:
        # An offer cannot be retrieved (the spec has no GET of one) and its list shows no Order/InvoiceReference:
        # whether a conversion whose answer was lost happened cannot be read.
        return not (kind is DocumentKind.OFFER and action in ("createorder", "createinvoice"))

    def act(self, kind: DocumentKind, key: str, action: str, external_id: str, request_id: str) -> Created:
        """Read whether the action shows done on the document (`_done`); if not, `PUT <path>/<number>/<action>`.

        Done shows as: an invoice's CreditInvoiceReference (credit), Booked, Sent (externalprint), WarehouseReady
        (GET of the invoice); an order's invoice (an invoice carrying the order's ExternalInvoiceReference1 whose
        OrderReference is the order), its Sent (the order list); an offer's Sent (the offer list)."""
        done = self._done(kind, key, action, external_id, request_id)
        if done is not None:
            log.info("fortnox %s of %s %s shows done already; not sent again", action, kind.value, key)
            return done
        path = f"{self.settings.fortnox_paths[kind.value]}/{quote(key, safe='')}/{action}"
        response = self._request("PUT", path, None, request_id)
        _raise_for_status(response)
        try:
            answer = next(v for v in response.json().values() if isinstance(v, dict))
            number = str(answer["DocumentNumber"])
        except (ValueError, KeyError, TypeError, StopIteration, AttributeError):
            raise AmbiguousError(
                f"Fortnox answered {response.status_code} to {action} without a document: {response.text[:200]!r}"
            ) from None
        if action == "credit":  # the answer is the original invoice: its CreditInvoiceReference names the credit
            number = _reference(answer.get("CreditInvoiceReference")) or ""
            if not number:
                raise AmbiguousError("Fortnox credited the invoice but named no credit invoice") from None
        return Created(number, number)

    def _done(self, kind: DocumentKind, key: str, action: str, external_id: str, request_id: str) -> Created | None:
        """What the action made, if the document shows it done; None if not (or it cannot be read)."""
        if not self.can_verify(kind, action):
            return None
        if kind is DocumentKind.CUSTOMER_INVOICE:
            invoice = self._read(f"{self.settings.fortnox_paths[kind.value]}/{quote(key, safe='')}", request_id)
            if action == "credit":
                credit = _reference(invoice.get("CreditInvoiceReference"))
                return Created(credit, credit) if credit else None
            flag = {"bookkeep": "Booked", "externalprint": "Sent", "warehouseready": "WarehouseReady"}[action]
            return Created(key, key) if invoice.get(flag) is True else None
        if action == "createinvoice":  # an order: its invoice carries the order's ExternalInvoiceReference1
            invoices = self.settings.fortnox_paths[DocumentKind.CUSTOMER_INVOICE.value]
            listed = self._list(f"{invoices}?externalinvoicereference1={quote(external_id, safe='')}", request_id)
            for item in listed:
                number = str(item.get("DocumentNumber"))
                invoice = self._read(f"{invoices}/{quote(number, safe='')}", request_id)
                if _reference(invoice.get("OrderReference")) == key:
                    return Created(number, number)
            return None
        listed = self._list(
            f"{self.settings.fortnox_paths[kind.value]}?documentnumber={quote(key, safe='')}", request_id
        )
        sent = any(str(item.get("DocumentNumber")) == key and item.get("Sent") is True for item in listed)
        return Created(key, key) if sent else None

    def _read(self, path: str, request_id: str) -> dict[str, Any]:
        """The document at `path` (the object inside Fortnox's wrapper)."""
        response = self._request("GET", path, None, f"{request_id}:read")
        _raise_for_status(response, reading=True)
        try:
            return cast(dict[str, Any], next(v for v in response.json().values() if isinstance(v, dict)))
        except (ValueError, StopIteration, AttributeError):
            raise ConnectFailed(f"Fortnox's answer to GET {path} cannot be read; asking again") from None

    def _list(self, path: str, request_id: str) -> list[dict[str, Any]]:
        """The items of a list answer (every page is not needed: the filters name one document)."""
        response = self._request("GET", path, None, f"{request_id}:read")
        _raise_for_status(response, reading=True)
        try:
            return [v for value in response.json().values() if isinstance(value, list) for v in value]
        except (ValueError, AttributeError):
            raise ConnectFailed(f"Fortnox's answer to GET {path} cannot be read; asking again") from None

    def can_look_up(self, kind: DocumentKind) -> bool:
        # Invoices and orders by ExternalInvoiceReference1 (their list filters); articles by their number.
        # Offers have no filter that holds our id: their open outcomes stay `unknown`.
        return kind in (DocumentKind.CUSTOMER_INVOICE, DocumentKind.ORDER, DocumentKind.ARTICLE)

    def look_up(self, request: LookupRequest) -> Settlement:
        created: dict[int, int | str] = {}
        resend: list[int] = []
        doubtful: list[int] = []
        for i, (doc, external_id) in enumerate(zip(request.docs, request.external_ids, strict=True)):
            if request.kind is DocumentKind.ARTICLE:
                number = doc.get("ArticleNumber")
                if not number:
                    doubtful.append(i)  # Fortnox gave it a number we never heard: cannot be found
                    continue
                found = self._article_exists(str(number), request.request_id)
            else:
                found = self._find_by_reference(request.kind, external_id, request.request_id)
            if found is None:
                resend.append(i)
            else:
                created[i] = found
        return Settlement(
            created=created,
            rejected=None,
            doubtful=doubtful,
            resend=resend,
            doubt="Fortnox gave this article a number we never learnt, so it cannot be looked up",
        )

    def _find_by_reference(self, kind: DocumentKind, reference: str, request_id: str) -> str | None:
        path = f"{self.settings.fortnox_paths[kind.value]}?externalinvoicereference1={quote(reference, safe='')}"
        response = self._request("GET", path, None, f"{request_id}:lookup")
        _raise_for_status(response, reading=True)
        try:
            items = response.json()[WRAPPERS[kind][1]]
            numbers = [
                str(item["DocumentNumber"]) for item in items if item.get("ExternalInvoiceReference1") == reference
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AmbiguousError(f"Fortnox's list answer cannot be read: {response.text[:200]!r}") from None
        if len(numbers) > 1:
            raise PermanentError(
                f"{len(numbers)} Fortnox documents carry ExternalInvoiceReference1 {reference!r} "
                f"({', '.join(numbers)}); an operator must decide which is ours"
            )
        return numbers[0] if numbers else None

    def _article_exists(self, number: str, request_id: str) -> str | None:
        path = f"{self.settings.fortnox_paths['article']}/{quote(number, safe='')}"
        response = self._request("GET", path, None, f"{request_id}:lookup")
        if response.status_code == 404:
            return None
        _raise_for_status(response, reading=True)
        return number


def _raise_for_status(response: httpx.Response, reading: bool = False) -> None:
    """Our error type for a non-2xx answer, with Fortnox's own message and code in it."""
    error = classify_status(response)
    if error is None:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    info = parse_error(body)
    if info is not None and isinstance(error, RequestRejected):
        code = f" (code {info.code})" if info.code is not None else ""
        raise RequestRejected(f"Fortnox: {info.message}{code}", status=response.status_code)
    if reading and isinstance(error, AmbiguousError):
        raise ConnectFailed(str(error)) from None  # a failed read created nothing: ask again
    raise error


def _reference(value: Any) -> str | None:
    """A document reference as Fortnox shows it ("12"), or None where it shows none ("", "0", null)."""
    text = "" if value is None else str(value).strip()
    return text if text not in ("", "0") else None


def _oauth_error(response: httpx.Response) -> str:
    try:
        data = response.json()
        return f"{data.get('error', '')}: {data.get('error_description', '')}".strip(": ")
    except (ValueError, AttributeError):
        return json.dumps(response.text[:100])
