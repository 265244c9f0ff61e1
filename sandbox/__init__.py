"""A local stand-in for the ERP APIs erpsync uses: SoftOne GO, Fortnox and the invoice service.

One server, one port. It behaves like the documented services, keeps everything in memory (or, with
``--state FILE``, in an SQLite file that survives its restart, as a real ERP's data would), and
adds operator endpoints under ``/_sandbox`` (ledger, stats, fault injection, latency, token
expiry, Fortnox's rate limit) for integrators and tests. It imports nothing from worker/, tasks/
or schemas/ on purpose: it is an independent reading of the specs, so a mistake in our models
cannot hide behind the same mistake here.

* SoftOne GO (sandbox.app): ``/Login/Token`` with companyApiKey + connectApiKey, arrays of
  customer invoices and orders, the CustomerInvoices Filter.
* Fortnox (sandbox.fortnox): the OAuth2 token endpoint ``POST /oauth-v1/token`` (HTTP Basic
  client credentials; ``grant_type=refresh_token`` with single-use refresh tokens, or
  ``client_credentials`` with a ``TenantId`` header), ``POST /3/invoices`` ``/3/orders``
  ``/3/offers`` ``/3/articles-v2`` (``{"Invoice": {...}}`` -> 201 with DocumentNumber /
  ArticleNumber), ``GET /3/invoices`` ``/3/orders`` ``/3/offers`` with filters (e.g.
  ``externalinvoicereference1``) and paging, one document's routes (sandbox.fortnox_actions:
  ``GET|PUT /3/invoices/{n}``, ``PUT`` of orders, offers and articles, ``GET|DELETE
  /3/articles-v2/{ArticleNumber}``, and the actions credit, bookkeep, cancel, email,
  externalprint, warehouseready, createinvoice, createorder with Fortnox's state rules). Bearer
  access tokens, validation errors as ``{"ErrorInformation": {"Error", "Message", "Code"}}``
  (401 and 429 with lower-case keys), EasyVat's error 2004167 per account, and the rate limit
  Fortnox enforces: at most ``fortnox_rate_limit`` (25) requests per access token in any sliding
  ``fortnox_rate_window_seconds`` (5 s), measured on arrival, then 429.
* The invoice service (sandbox.invoice_service): ``POST /invoices`` with a static Bearer API
  token, the body validated (required fields, types, rows vs. totals vs. vats, VAT 0/6/12/25,
  dates), the created invoice answered as in the spec's example response (``id`` "I.<n>").

All three share the customer register (by default every all-digit customer number exists), the
ledger (``GET /_sandbox/ledger?target=softone|fortnox|invoiceservice&kind=...``: every created
document with its ``target``, ``kind``, ``key``, ``number`` and ``external_id``; ``history=1``
adds what happened to it since), the stats
(per route and status, plus a ``fortnox`` section: requests, rate_limited, max_in_window,
injected_429, refresh_token_reuse, ...), the latency and the fault injection: fault rules by path
(sandbox.faults: "the next N matching requests fail like this") and seeded random draws per
request (sandbox.random_faults: ``--faults 429=0.05 --seed 7``) hit the ERP routes of every API,
never the token endpoints.

Webhook receivers (sandbox.webhooks): ``POST /_sandbox/webhooks/{name}`` takes erpsync's signed job webhooks,
checks each signature under the secret set with ``POST /_sandbox/webhooks/{name}/config``, records them
(``GET /_sandbox/webhooks/{name}``) and fails (``fail_next``) or hangs (``hang_seconds``) on purpose.

Demo credentials (sandbox.config): SoftOne ``demo-company-key`` / ``demo-connect-key``; Fortnox
client ``demo-fortnox-client`` / ``demo-fortnox-secret``, refresh token ``demo-fortnox-refresh``
(valid once per process), TenantId ``demo-fortnox-tenant``; invoice service Bearer
``demo-invoice-service-token``. A JSON config file (``--config``) replaces any of them.

    from sandbox import create_app, serve
    serve(port=8765, latency_ms=30)          # or: python -m sandbox --port 8765
    serve(faults="429=0.05,503=0.05", seed=7)  # or: python -m sandbox --faults 429=0.05,503=0.05 --seed 7
    serve(fortnox_rate_limit=25, fortnox_rate_window=5.0)  # or: --fortnox-rate-limit 25 --fortnox-rate-window 5
"""

from sandbox.app import create_app
from sandbox.config import FortnoxAccount, InvoiceServiceClient, SandboxConfig
from sandbox.random_faults import FaultProfile
from sandbox.server import background_server, serve

__all__ = [
    "FaultProfile",
    "FortnoxAccount",
    "InvoiceServiceClient",
    "SandboxConfig",
    "background_server",
    "create_app",
    "serve",
]
