"""Runtime settings from the environment (prefix `ERPSYNC_`), and per-tenant ERP credentials.

Credentials come from here only: from `ERPSYNC_TENANTS_FILE` (JSON) or the built-in demo tenant, never
from job messages, so a producer cannot point a job at another tenant's keys or at another host.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.kinds import TENANT_PATTERN, Target
from worker.errors import ConfigurationError

#: Keys the sandbox accepts out of the box (see sandbox/config.py); not secrets of any real company.
DEMO_COMPANY_API_KEY = "demo-company-key"
DEMO_CONNECT_API_KEY = "demo-connect-key"
DEMO_FORTNOX_CLIENT_ID = "demo-fortnox-client"
DEMO_FORTNOX_CLIENT_SECRET = "demo-fortnox-secret"
DEMO_FORTNOX_TENANT_ID = "demo-fortnox-tenant"
DEMO_INVOICE_SERVICE_TOKEN = "demo-invoice-service-token"


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` requests per `window` seconds."""

    limit: int
    window: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`"25/5"` (25 per 5 seconds), `"25/5s"`, `"300/60"`; ValueError with the reason otherwise."""
        head, sep, tail = text.strip().partition("/")
        try:
            if not sep:
                raise ValueError
            limit, window = int(head), float(tail.strip().removesuffix("s"))
        except ValueError:
            raise ValueError(f"{text!r} is not a rate: write requests/seconds, e.g. 25/5") from None
        if limit < 1 or not window > 0:
            raise ValueError(f"{text!r}: the limit must be at least 1 and the window above 0 seconds")
        return cls(limit, window)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window:g}"

    @property
    def per_second(self) -> float:
        return self.limit / self.window


class TenantConfig(BaseModel):
    """One tenant: one account at one ERP (its target), where it is and its credentials.

    A company that uses two ERPs is two tenants. Credentials by target:
    - softone: `company_api_key`, `connect_api_key` (the token is fetched with them);
    - fortnox: `client_id`, `client_secret`, and either `refresh_token` (the authorization-code flow's first
      refresh token; its successors are kept in Redis) or `tenant_id` (client-credentials flow of a service
      account); `auth_url` when the OAuth server is not `base_url` (real Fortnox: https://apps.fortnox.se);
    - invoiceservice: `api_token` (a Bearer token).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TENANT_PATTERN)
    target: Target = Target.SOFTONE
    base_url: str
    # Requests this tenant may have in flight at once, across every worker; None: ERPSYNC_TENANT_MAX_IN_FLIGHT.
    max_in_flight: int | None = Field(default=None, ge=0)
    # Requests per window over every worker ("25/5"), "none" for no limit; None: ERPSYNC_RATE_LIMITS[target].
    rate_limit: str | None = None
    # The tenant's share of intake when several tenants have work waiting: a weight-2 tenant gets twice as many
    # intake items as a weight-1 one (worker/store/intake.py; round robin in virtual time, 1/weight per item).
    weight: float = Field(default=1.0, gt=0)

    company_api_key: SecretStr | None = None
    connect_api_key: SecretStr | None = None

    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    tenant_id: str | None = None
    auth_url: str | None = None

    api_token: SecretStr | None = None

    # Job webhooks (worker/webhooks/): when one of the tenant's jobs reaches a final status, its summary is POSTed
    # here, signed with HMAC-SHA256 under the secret (docs/operations.md, "Job webhooks"). Both or neither.
    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhook_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _credentials_of_its_target(self) -> TenantConfig:
        required = {
            Target.SOFTONE: ("company_api_key", "connect_api_key"),
            Target.FORTNOX: ("client_id", "client_secret"),
            Target.INVOICE_SERVICE: ("api_token",),
        }[self.target]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.target.value} tenant needs {', '.join(missing)}")
        if self.target is Target.FORTNOX and (self.refresh_token is None) == (self.tenant_id is None):
            raise ValueError("a fortnox tenant needs either refresh_token or tenant_id (client credentials)")
        others = {name for names in _CREDENTIALS.values() for name in names} - set(_CREDENTIALS[self.target])
        stray = sorted(name for name in others if getattr(self, name) is not None)
        if stray:
            raise ValueError(f"{', '.join(stray)} are not credentials of a {self.target.value} tenant")
        if self.rate_limit is not None and self.rate_limit.strip().lower() != "none":
            Rate.parse(self.rate_limit)
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("webhook_url and webhook_secret go together: a webhook is always signed")
        return self

    def rate(self, settings: Settings) -> Rate | None:
        """The rate this tenant's requests are held to, over all workers; None: unlimited."""
        text = self.rate_limit if self.rate_limit is not None else settings.rate_limits.get(self.target.value)
        if text is None or text.strip().lower() == "none":
            return None
        return Rate.parse(text)


#: TenantConfig fields that hold secrets (client_id and tenant_id name an account; they are not secret).
SECRET_FIELDS = ("company_api_key", "connect_api_key", "client_secret", "refresh_token", "api_token", "webhook_secret")
SECRET_MIN_LENGTH = 6

_CREDENTIALS: dict[Target, tuple[str, ...]] = {
    Target.SOFTONE: ("company_api_key", "connect_api_key"),
    Target.FORTNOX: ("client_id", "client_secret", "refresh_token", "tenant_id", "auth_url"),
    Target.INVOICE_SERVICE: ("api_token",),
}


class Settings(BaseSettings):
    """Every knob of the worker and CLI; each is `ERPSYNC_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ERPSYNC_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "erpsync"
    queue: str = "erpsync"
    # Sends (one POST each, I/O-bound) have a queue of their own, so a deployment can serve them from a
    # threads pool while intake (CPU-bound validation) runs in a prefork pool; "" means "<queue>.send".
    send_queue: str = ""

    # Batching: SoftOne takes arrays; 50 documents keep one request's work (and what a rejected array puts
    # in doubt) small while cutting requests 50-fold; 1 MB stays well below common proxy body limits.
    batch_max_docs: int = Field(default=50, ge=1, le=1000)
    batch_max_bytes: int = Field(default=1_000_000, ge=1024)
    # Coalescing: a partial batch waits at most this long for more documents (from any job).
    batch_max_wait_ms: int = Field(default=500, ge=0)
    max_job_documents: int = Field(default=1_000_000, ge=1)
    # Jobs larger than this are validated in chunks by several tasks at once.
    intake_chunk_docs: int = Field(default=1000, ge=10)
    # A job that does not name its lane (`priority`) is `interactive` up to this many documents, `bulk` above:
    # interactive jobs are taken for intake before their tenant's bulk ones and never together with them.
    interactive_max_documents: int = Field(default=100, ge=0)
    # Whole batches that intake stores together (a big file's chunk) are placed with the dispatcher this many at a
    # time (one script call, and the tickets for them), so that the first of a chunk go out while it is batched.
    send_group_batches: int = Field(default=4, ge=1, le=50)

    result_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # The duplicate index must outlive results: a receipt re-sent next month must still be caught.
    dedup_ttl_seconds: int = Field(default=400 * 24 * 3600, ge=60)

    # Celery/Redis transport: a message not acked within this time is delivered again. Far above any
    # backoff countdown (retry_backoff_cap) and any single POST (http_* timeouts).
    visibility_timeout: int = Field(default=3600, ge=60)
    prefetch_multiplier: int = Field(default=1, ge=1)

    http_connect_timeout: float = 5.0
    http_read_timeout: float = 60.0
    http_write_timeout: float = 30.0
    http_pool_timeout: float = 30.0
    http_max_connections: int = 20

    retry_max_attempts: int = Field(default=8, ge=1)
    retry_backoff_base: float = Field(default=1.0, gt=0)
    retry_backoff_cap: float = Field(default=300.0, gt=0)
    # After an ambiguous failure, wait this long before asking the ERP what it saved (a request that timed
    # out on our side may still be running on the ERP's).
    reconcile_delay_seconds: float = Field(default=5.0, ge=0)
    # A sender holds a batch (and its tenant's in-flight slot) on a lease of this many seconds, renewed by its
    # process every third of it while it works (worker/pipeline/dispatch.py): a lease that runs out means the
    # sender died, and its batches and slots come back within this long (worker/store/dispatch.py).
    send_lease_seconds: int = Field(default=15, ge=3)
    # At most this many requests in flight per tenant, over all workers (0: no cap). An ERP account is
    # one customer's: many sender threads must not look like an attack to it. A tenant at its cap is parked
    # by the dispatcher until one of its requests is answered; no sender waits for it.
    tenant_max_in_flight: int = Field(default=8, ge=0)
    # Send tickets (send_next messages, each serving whatever batch is due) waiting in the send queue or running at
    # once, at most; more than all sender threads together, so that every thread has one. A running ticket counts
    # until send_ticket_seconds after it last asked for a batch (one lost with a killed worker stops counting then),
    # and serves for send_serve_seconds, then hands over to a new ticket.
    send_tickets: int = Field(default=48, ge=1)
    send_ticket_seconds: float = Field(default=60.0, gt=0)
    send_serve_seconds: float = Field(default=3.0, gt=0)

    # SoftOne tokens live 60 minutes; we stop using one 5 minutes before that.
    token_ttl_seconds: int = Field(default=55 * 60, ge=10)

    softone_base_url: str = "http://127.0.0.1:8765"
    softone_invoice_path: str = "/Economy/Billing/CustomerInvoices"
    softone_order_path: str = "/Economy/Billing/Orders"
    softone_filter_path: str = "/Economy/Billing/CustomerInvoices/Filter"
    softone_token_path: str = "/Login/Token"
    softone_filter_page_size: int = Field(default=500, ge=1, le=10_000)

    # Fortnox. The spec shows `/3/articles-v2/...` for the alpha article API and no paths for the others:
    # invoices, orders and offers use Fortnox's stable paths.
    fortnox_base_url: str = "http://127.0.0.1:8765"
    fortnox_token_path: str = "/oauth-v1/token"
    fortnox_paths: dict[str, str] = {
        "customer_invoice": "/3/invoices",
        "order": "/3/orders",
        "offer": "/3/offers",
        "article": "/3/articles-v2",
    }
    # Access tokens live an hour: we renew 5 minutes before that.
    fortnox_token_renew_seconds: int = Field(default=300, ge=0)

    invoice_service_base_url: str = "http://127.0.0.1:8765"
    invoice_service_path: str = "/invoices"

    # Requests per sliding window per tenant, over every worker ("N/seconds"; "none": no limit), by target.
    # Fortnox allows 25 per 5 s per access token and answers 429 beyond it.
    rate_limits: dict[str, str] = {"fortnox": "25/5"}
    # Our window is this much wider than the ERP's, for the jitter between our sending and its counting.
    rate_limit_margin_seconds: float = Field(default=0.4, ge=0)
    # The dispatcher takes a batch's first turn as it hands the batch out; a further request of the same send (a
    # look-up's next page, a retry after renewing a token) waits at most this long for its turn, else the batch
    # comes back later (not an attempt), so that no sender thread waits long for one tenant.
    rate_limit_wait_seconds: float = Field(default=1.0, ge=0)

    # Redis over TLS: a `rediss://` ERPSYNC_REDIS_URL verifies the server against these CA certificates
    # (default: the system's); a client certificate when the server asks for one. Password: in the URL.
    redis_ssl_ca_certs: Path | None = None
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None

    # The producer contract for any language (docs/reference.md, "Producing from any language"): limits on one job
    # message written to Redis, and how often an idle intake worker looks for one.
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Rows (of any list field) in one document; a document beyond it fails on its own, the job goes on.
    max_document_rows: int = Field(default=5000, ge=1)
    submit_poll_seconds: float = Field(default=0.2, gt=0, le=5)

    # Logs: JSON lines, or key=value when stderr is a terminal ("auto"); see worker/observability/logs.py.
    log_format: Literal["auto", "json", "text"] = "auto"
    # `erpsync metrics` serves Prometheus text here (worker/observability/metrics.py).
    metrics_port: int = Field(default=9808, ge=1, le=65535)
    # An open job with no document settled for this long is shown as stalled by `erpsync status`.
    stall_seconds: int = Field(default=120, ge=1)

    # The archive (worker/archive/): every outcome and job summary, kept in a relational database beyond Redis's
    # retention. A SQLAlchemy URL: `postgresql+psycopg://user@host/db` in production; the default is an embedded
    # SQLite file (created and migrated on first use); "off" (or empty) turns the archive off.
    archive_url: str = "sqlite:///erpsync-archive.sqlite3"
    # Keep each created or updated document's body as sent (masked like every stored document). Off by default.
    archive_bodies: bool = False
    # Outcomes and jobs older than this are deleted by `erpsync archive prune` and the archiver (once a day);
    # 0 keeps everything. Bookkeeping rules ask for years: 7 by default.
    archive_retention_days: int = Field(default=7 * 366, ge=0)
    # Events the archiver writes in one transaction at most.
    archive_batch_events: int = Field(default=2000, ge=1, le=50_000)
    # Rebuild a lost duplicate index from the archive without an operator (docs/operations.md, "When Redis loses data").
    archive_auto_restore: bool = False
    # Job webhooks (worker/webhooks/): one POST's timeout, and attempts before a delivery is given up.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=12, ge=1)

    tenants_file: Path | None = None
    demo_tenant: bool = True
    default_tenant: str = "demo"

    @model_validator(mode="after")
    def _timings_fit_together(self) -> Settings:
        if self.retry_backoff_cap * 4 > self.visibility_timeout:
            raise ValueError(
                f"ERPSYNC_RETRY_BACKOFF_CAP ({self.retry_backoff_cap}) must stay far below "
                f"ERPSYNC_VISIBILITY_TIMEOUT ({self.visibility_timeout}): at most a quarter of it, or a waiting "
                "retry is delivered twice"
            )
        return self

    @property
    def archive_enabled(self) -> bool:
        return self.archive_url.strip().lower() not in ("", "off", "none")

    def webhooks_enabled(self) -> bool:
        """Some tenant has a webhook: final jobs are announced on the job-events stream."""
        return any(tenant.webhook_url for tenant in self.tenants().values())

    def outbox_flags(self) -> str:
        """What the store's scripts append to the outbox streams (worker/store/lua/job_functions.lua)."""
        return ("a" if self.archive_enabled else "") + ("w" if self.webhooks_enabled() else "")

    def redis_py_url(self) -> str:
        """URL for redis-py (`unix://` for a socket)."""
        url = self.redis_url
        if url.startswith("redis+socket://"):
            return "unix://" + url[len("redis+socket://") :]
        return url

    @property
    def redis_uses_tls(self) -> bool:
        return self.redis_url.lower().startswith("rediss://")

    def redis_ssl_options(self) -> dict[str, Any]:
        """TLS options for a `rediss://` URL, in the names both redis-py and kombu's `broker_use_ssl` take;
        empty for plain Redis. Verification is on unless ERPSYNC_REDIS_SSL_CERT_REQS says otherwise."""
        if not self.redis_uses_tls:
            return {}
        import ssl

        options: dict[str, Any] = {
            "ssl_cert_reqs": {
                "required": ssl.CERT_REQUIRED,
                "optional": ssl.CERT_OPTIONAL,
                "none": ssl.CERT_NONE,
            }[self.redis_ssl_cert_reqs]
        }
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, f"redis_{name}")
            if value is not None:
                if not value.is_file():
                    raise ConfigurationError(f"ERPSYNC_REDIS_{name.upper()}: no file at {value}")
                options[name] = str(value)
        return options

    @property
    def send_queue_name(self) -> str:
        return self.send_queue or f"{self.queue}.send"

    def broker_url(self) -> str:
        """URL for Celery/kombu (`redis+socket://` for a socket: `unix://` is not a kombu transport)."""
        url = self.redis_url
        if url.startswith("unix://"):
            return "redis+socket://" + url[len("unix://") :]
        return url

    def tenants(self) -> dict[str, TenantConfig]:
        return load_tenants(self)

    def base_url_of(self, target: Target | str) -> str:
        return {
            Target.SOFTONE: self.softone_base_url,
            Target.FORTNOX: self.fortnox_base_url,
            Target.INVOICE_SERVICE: self.invoice_service_base_url,
        }[Target(target)]

    def secret_values(self) -> list[str]:
        """Every credential this deployment holds: the tenants' keys, secrets and tokens, the Redis and archive
        passwords, Flower's and the web console's passwords (FLOWER_BASIC_AUTH, ERPSYNC_CONSOLE_AUTH and
        ERPSYNC_CONSOLE_READONLY_AUTH, `user:pass[,user:pass]`) and ERPSYNC_CONSOLE_SECRET, longest first.

        What must never appear in a log line, a result, a task's arguments, or a document we store (see
        worker/producer/submit.py). Values shorter than SECRET_MIN_LENGTH are left out: masking "demo" everywhere would
        garble logs and refuse innocent documents, and no real credential is that short."""
        values: list[str] = []
        for tenant in self.tenants().values():
            for name in SECRET_FIELDS:
                secret = getattr(tenant, name)
                if secret is not None:
                    values.append(secret.get_secret_value())
        try:
            password = urlsplit(self.redis_url).password
        except ValueError:
            password = None
        if password:
            values.append(unquote(password))
        try:
            archive_password = urlsplit(self.archive_url).password if self.archive_enabled else None
        except ValueError:
            archive_password = None
        if archive_password:
            values.append(unquote(archive_password))
        # Flower's and the web console's accounts (`user:pass[,user:pass]`), and the console's session key.
        for variable in ("FLOWER_BASIC_AUTH", "ERPSYNC_CONSOLE_AUTH", "ERPSYNC_CONSOLE_READONLY_AUTH"):
            for pair in os.environ.get(variable, "").split(","):
                _, colon, account_password = pair.partition(":")
                if colon and account_password:
                    values.append(account_password)
        if os.environ.get("ERPSYNC_CONSOLE_SECRET"):
            values.append(os.environ["ERPSYNC_CONSOLE_SECRET"])
        return sorted({v for v in values if len(v) >= SECRET_MIN_LENGTH}, key=len, reverse=True)

    def tenant(self, name: str) -> TenantConfig:
        tenants = self.tenants()
        if name not in tenants:
            raise ConfigurationError(unknown_tenant_message(name, sorted(tenants)))
        return tenants[name]


SHOWN_TENANTS = 12  # an unknown tenant's error names this many of the configured ones (`erpsync tenants`: all)


def unknown_tenant_message(name: str, configured: list[str]) -> str:
    """`unknown tenant 'acem' (did you mean 'acme'?); configured: acme, beta (ERPSYNC_TENANTS_FILE)`."""
    if not configured:
        return f"unknown tenant {name!r}: no tenant is configured (ERPSYNC_TENANTS_FILE, ERPSYNC_DEMO_TENANT)"
    close = difflib.get_close_matches(name, configured, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(configured[:SHOWN_TENANTS]) + (
        f" and {len(configured) - SHOWN_TENANTS} more" if len(configured) > SHOWN_TENANTS else ""
    )
    return f"unknown tenant {name!r}{hint}; configured: {shown} (ERPSYNC_TENANTS_FILE)"


def _read_tenants_file(path: Path, base_urls: dict[str, str]) -> dict[str, TenantConfig]:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read tenants file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"tenants file {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"tenants file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    entries = data.get("tenants") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f'tenants file {path} must be {{"tenants": [ ... ]}}')
    tenants: dict[str, TenantConfig] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            entry = {"base_url": base_urls.get(str(entry.get("target", "softone")), ""), **entry}
        try:
            tenant = TenantConfig.model_validate(entry)
        except ValidationError as exc:
            # Field names and messages only: the input (a secret, perhaps) is never echoed.
            reasons = "; ".join(
                (".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise ConfigurationError(f"tenants file {path}: entry {i} is invalid ({reasons})") from None
        tenants[tenant.name] = tenant
    return tenants


@lru_cache(maxsize=8)
def _tenants_cached(
    path: Path | None, mtime: float, demo: bool, base_urls: tuple[tuple[str, str], ...]
) -> dict[str, TenantConfig]:
    urls = dict(base_urls)
    tenants: dict[str, TenantConfig] = {}
    if demo:
        # One demo tenant per target, with the keys the sandbox accepts out of the box.
        tenants["demo"] = TenantConfig(
            name="demo",
            base_url=urls["softone"],
            company_api_key=SecretStr(DEMO_COMPANY_API_KEY),
            connect_api_key=SecretStr(DEMO_CONNECT_API_KEY),
        )
        tenants["demo-fortnox"] = TenantConfig(
            name="demo-fortnox",
            target=Target.FORTNOX,
            base_url=urls["fortnox"],
            client_id=DEMO_FORTNOX_CLIENT_ID,
            client_secret=SecretStr(DEMO_FORTNOX_CLIENT_SECRET),
            tenant_id=DEMO_FORTNOX_TENANT_ID,
        )
        tenants["demo-invoices"] = TenantConfig(
            name="demo-invoices",
            target=Target.INVOICE_SERVICE,
            base_url=urls["invoiceservice"],
            api_token=SecretStr(DEMO_INVOICE_SERVICE_TOKEN),
        )
    if path is not None:
        tenants.update(_read_tenants_file(path, urls))
    return tenants


def load_tenants(settings: Settings) -> dict[str, TenantConfig]:
    """Tenants from the file (re-read when it changes) plus the demo tenants unless disabled."""
    path = settings.tenants_file
    mtime = path.stat().st_mtime if path is not None and path.exists() else 0.0
    urls = tuple((t.value, settings.base_url_of(t)) for t in Target)
    return _tenants_cached(path, mtime, settings.demo_tenant, urls)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
