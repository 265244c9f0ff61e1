"""The webhook sender: a process of its own (`erpsync webhooks run`) that turns final jobs into signed POSTs.

Two loops on one asyncio event loop and one `httpx.AsyncClient`:

- the pump reads the job-events stream (worker/store/webhooks.py), builds each event's payload for a tenant that
  has a webhook (worker/webhooks/payload.py) and schedules it as a delivery; events of other tenants are
  acknowledged and dropped;
- the dispatcher claims due deliveries, as many as it has free slots (MAX_IN_FLIGHT, at most PER_TENANT per
  tenant: one tenant names one endpoint), and sends each in a task of its own with a timeout
  (ERPSYNC_WEBHOOK_TIMEOUT_SECONDS, for the whole exchange): a hanging endpoint holds its own tenant's slots and
  nothing else. A 2xx answer delivers; any other answer, a timeout or a connection error is a failed attempt, due
  again after 1 s, 2 s, 4 s ... (capped at 10 min, jittered) until ERPSYNC_WEBHOOK_MAX_ATTEMPTS, then given up
  and kept for `erpsync webhooks list` and `erpsync status`.

The pipeline never waits for any of this: a job is finished when the store says so, and its event waits in Redis
(capped) for this process. Redis calls run in threads (the store's client is synchronous). Log lines name the
tenant, job, delivery, attempt and HTTP status, and the endpoint without its query string; never the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import httpx

from worker.errors import ConfigurationError
from worker.observability import metrics
from worker.observability.logs import fields, log_context
from worker.redaction import secrets_filter
from worker.settings import Settings, TenantConfig
from worker.store.errors import REDIS_ERRORS
from worker.store.webhooks import Delivery, WebhookStore
from worker.webhooks.payload import job_payload, serialize
from worker.webhooks.signing import signed_headers

__all__ = [
    "BACKOFF_CAP_SECONDS",
    "MAX_IN_FLIGHT",
    "PER_TENANT",
    "Attempt",
    "WebhookSender",
    "endpoint",
    "retry_delay",
]

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32  # POSTs at once, over every tenant
PER_TENANT = 4  # POSTs at once to one tenant's endpoint
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 600.0
LEASE_SLACK_SECONDS = 5.0  # a claimed delivery is leased for the timeout and this
EVENTS_PER_READ = 100
READ_BLOCK_MS = 1000  # how long one read of the stream waits for a new event
TAKE_OVER_IDLE_MS = 60_000  # events another sender read and held this long are taken over (it died)
TAKE_OVER_EVERY = 30.0
TIDY_EVERY = 600.0
IDLE_POLL_SECONDS = 0.25  # with nothing due, how often the due deliveries are looked at again
REDIS_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0)
#: What the loops wait out without a traceback: Redis failing, a tenants file being edited (unreadable a moment).
PUMP_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, ConfigurationError)

P = ParamSpec("P")
R = TypeVar("R")


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """How long after its `attempts`-th failed attempt a delivery is due again: 1 s, 2 s, 4 s ... capped at 10 min,
    each between half and all of that (jitter: endpoints that failed together are not retried together)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def endpoint(url: str) -> str:
    """A webhook URL as logs and errors show it: no credentials, no query string, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: the HTTP status (None without an answer) and, unless delivered, why not."""

    status_code: int | None
    error: str = ""
    final: bool = False  # no point in trying again (the tenant has no webhook any more)

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set, `seconds` at most."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


class WebhookSender:
    """Schedules and sends one deployment's webhooks until `run`'s stop event is set."""

    def __init__(
        self,
        store: WebhookStore,
        settings: Settings,
        *,
        consumer: str | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        per_tenant: int = PER_TENANT,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.max_in_flight = max_in_flight
        self.per_tenant = per_tenant
        self.timeout = settings.webhook_timeout_seconds
        self.rng = rng or random.Random()
        self.clock = clock
        self.in_flight: dict[str, int] = {}
        self.sending: dict[asyncio.Task[None], Delivery] = {}
        self._wake = asyncio.Event()
        self._next_take_over = 0.0
        self._next_tidy = 0.0

    async def _call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """A store call, in a thread: the event loop goes on sending meanwhile."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ----- the process
    async def run(self, stop: asyncio.Event, client: httpx.AsyncClient | None = None) -> None:
        """Pump and dispatch until `stop` is set; then finish the POSTs under way (the timeout at most) and put back
        what could not finish. `client`: the HTTP client (made here, and closed, when not given)."""
        own = client is None
        http = client or httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        for name in ("httpx", "httpcore"):  # their request lines carry whole URLs: query strings too
            logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
        try:
            await self._call(self.store.ensure_group)
            loops = [asyncio.create_task(self._pump_loop(stop)), asyncio.create_task(self._dispatch_loop(http, stop))]
            await stop.wait()
            self._wake.set()
            await asyncio.gather(*loops)
            await self.drain(self.timeout + 1)
        finally:
            if own:
                await http.aclose()

    async def drain(self, seconds: float) -> None:
        """Wait `seconds` at most for the POSTs under way; cancel the rest and make their deliveries due now."""
        if not self.sending:
            return
        _, late = await asyncio.wait(list(self.sending), timeout=seconds)
        lost = [self.sending[task] for task in late]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(*REDIS_ERRORS):
            await self._call(self.store.requeue_lost, lost, self.clock())

    async def _pump_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                if await self.pump_once(block_ms=READ_BLOCK_MS):
                    self._wake.set()
                failures = 0
            except Exception as exc:  # Redis, the tenants file, or a bug: the loop goes on, the events wait
                await self._pause(stop, "webhook events not read", exc, failures)
                failures += 1

    async def _dispatch_loop(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                claimed = await self.dispatch_once(client)
                failures = 0
            except Exception as exc:  # as in the pump: due deliveries wait in Redis
                await self._pause(stop, "webhook deliveries not claimed", exc, failures)
                failures += 1
                continue
            if not claimed:
                await _wait(self._wake, IDLE_POLL_SECONDS)
                self._wake.clear()

    async def _pause(self, stop: asyncio.Event, what: str, exc: Exception, failures: int) -> None:
        """After a loop's failure: a line (a traceback for what is neither Redis nor the settings), then a wait."""
        delay = REDIS_RETRY_SECONDS[min(failures, len(REDIS_RETRY_SECONDS) - 1)]
        if isinstance(exc, PUMP_ERRORS):
            log.warning("%s (%s: %s); again in %.0fs", what, type(exc).__name__, exc, delay)
        else:
            log.exception("%s; again in %.0fs", what, delay)
        await _wait(stop, delay)

    # ----- events into deliveries
    async def pump_once(self, *, block_ms: int = 0) -> int:
        """Read the next events and schedule a delivery of each whose tenant has a webhook; returns how many."""
        now = self.clock()
        take_over = 0
        if now >= self._next_take_over:
            take_over, self._next_take_over = TAKE_OVER_IDLE_MS, now + TAKE_OVER_EVERY
        if now >= self._next_tidy:
            self._next_tidy = now + TIDY_EVERY
            await self._call(self.store.tidy, now, consumer=self.consumer)
        events = await self._call(
            self.store.read_events, self.consumer, EVENTS_PER_READ, block_ms=block_ms, take_over_idle_ms=take_over
        )
        if not events:
            return 0
        tenants = self.settings.tenants()
        hooked = [e for e in events if e.job_id and e.tenant in tenants and tenants[e.tenant].webhook_url]
        jobs = await self._call(self.store.jobs, [e.job_id for e in hooked]) if hooked else []
        bodies = {
            e.entry_id: serialize(job_payload(e.job_id, e.tenant, e.status, e.at, job))
            for e, job in zip(hooked, jobs, strict=True)
        }
        return await self._call(self.store.schedule, events, bodies, self.clock())

    # ----- deliveries
    async def dispatch_once(self, client: httpx.AsyncClient) -> int:
        """Claim due deliveries for the free slots and start sending each; returns how many were claimed."""
        free = self.max_in_flight - len(self.sending)
        if free <= 0:
            return 0
        claimed = await self._call(
            self.store.claim_due,
            self.clock(),
            lease_seconds=self.timeout + LEASE_SLACK_SECONDS,
            limit=free,
            in_flight={t: n for t, n in self.in_flight.items() if n},
            per_tenant=self.per_tenant,
        )
        for delivery in claimed:
            self.in_flight[delivery.tenant] = self.in_flight.get(delivery.tenant, 0) + 1
            task = asyncio.create_task(self.deliver(client, delivery))
            self.sending[task] = delivery
            task.add_done_callback(self._sent)
        return len(claimed)

    def _sent(self, task: asyncio.Task[None]) -> None:
        delivery = self.sending.pop(task)
        self.in_flight[delivery.tenant] -= 1
        if not self.in_flight[delivery.tenant]:
            del self.in_flight[delivery.tenant]
        self._wake.set()

    async def deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        """One attempt at `delivery`, and its outcome recorded (a Redis error leaves it to its lease's end)."""
        with log_context(job_id=delivery.job_id, tenant=delivery.tenant, attempt=delivery.attempts + 1):
            try:
                attempt = await self.attempt(client, delivery)
                await self.record(delivery, attempt)
            except REDIS_ERRORS as exc:
                log.warning("webhook outcome not recorded (%s); sent again after its lease", type(exc).__name__)
            except Exception:
                log.exception("webhook delivery %s failed unexpectedly", delivery.delivery_id)

    async def attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> Attempt:
        """POST `delivery` to its tenant's endpoint, signed now; the whole exchange within the timeout."""
        try:
            tenant: TenantConfig | None = self.settings.tenants().get(delivery.tenant)
        except ConfigurationError as exc:
            return Attempt(None, f"tenants file: {exc}")
        if tenant is None or not tenant.webhook_url or tenant.webhook_secret is None:
            return Attempt(None, "the tenant has no webhook (any more)", final=True)
        secret = tenant.webhook_secret.get_secret_value()
        secrets_filter().add_secret(secret)
        body = delivery.body.encode()
        headers = signed_headers(secret, body, delivery.delivery_id, now=self.clock())
        try:
            async with asyncio.timeout(self.timeout):
                response = await client.send(
                    client.build_request("POST", tenant.webhook_url, content=body, headers=headers), stream=True
                )
                await response.aclose()  # the answer's body is not read: its status is all that counts
        except (TimeoutError, httpx.TimeoutException):
            return Attempt(None, f"no answer within {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {_scrubbed(exc, tenant.webhook_url)}")
        status = response.status_code
        return Attempt(status, "" if 200 <= status < 300 else f"HTTP {status}")

    async def record(self, delivery: Delivery, attempt: Attempt) -> None:
        """Delivered: gone. Failed: due again after a backoff, or given up after the last attempt."""
        prefix = self.settings.key_prefix
        attempts = delivery.attempts + 1
        info = fields(delivery=delivery.delivery_id, status_code=attempt.status_code)
        if attempt.delivered:
            increments = metrics.count(prefix, metrics.WEBHOOK_DELIVERIES, (delivery.tenant, "delivered"))
            await self._call(self.store.delivered, delivery.delivery_id, increments)
            log.info("webhook delivered: job %s, attempt %d, HTTP %s", delivery.job_id, attempts,
                     attempt.status_code, extra=info)  # fmt: skip
            return
        now = self.clock()
        give_up = attempt.final or attempts >= self.settings.webhook_max_attempts
        retry_at = None if give_up else now + retry_delay(attempts, self.rng)
        outcome = "gave_up" if give_up else "retry"
        increments = metrics.count(prefix, metrics.WEBHOOK_DELIVERIES, (delivery.tenant, outcome))
        await self._call(self.store.failed, delivery, now=now, error=attempt.error,
                         status_code=attempt.status_code, retry_at=retry_at, increments=increments)  # fmt: skip
        if give_up:
            log.error("webhook given up: job %s, attempt %d: %s", delivery.job_id, attempts, attempt.error, extra=info)
        else:
            log.warning("webhook failed: job %s, attempt %d: %s; again in %.1fs", delivery.job_id, attempts,
                        attempt.error, (retry_at or now) - now, extra=info)  # fmt: skip


def _scrubbed(exc: Exception, url: str) -> str:
    """An HTTP error's text without the URL's query string or credentials, a line at most."""
    text = str(exc).replace(url, endpoint(url)) or type(exc).__name__
    return secrets_filter().scrub(text).splitlines()[0][:200]
