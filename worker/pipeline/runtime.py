"""Per-process singletons the pipeline's steps share, each made on first use: the results store, the buffer, the
intake queue, the dispatcher, the look-alike holds, the rate limiter (on the process's Redis client), and a tenant's
connector (on the process's HTTP client); also the shape of a tenant's batches and who holds a batch's lease."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from typing import NamedTuple

from schemas import DocumentKind
from worker.connectors import CONNECTORS, Connector
from worker.connectors.http import get_client
from worker.errors import ConfigurationError
from worker.settings import get_settings
from worker.store.buffer import CoalescingBuffer
from worker.store.client import get_redis
from worker.store.dispatch import Dispatcher
from worker.store.intake import IntakeQueue
from worker.store.lookalikes import LookalikeHolds
from worker.store.ratelimit import RateLimiter
from worker.store.results import ResultsStore

__all__ = [
    "BatchShape",
    "batch_shape",
    "buffer",
    "connector",
    "dispatcher",
    "intake",
    "limiter",
    "lookalikes",
    "sender_id",
    "store",
]


@lru_cache(maxsize=1)
def store() -> ResultsStore:
    settings = get_settings()
    return ResultsStore(get_redis(settings), settings)


@lru_cache(maxsize=1)
def buffer() -> CoalescingBuffer:
    settings = get_settings()
    return CoalescingBuffer(get_redis(settings), settings)


def connector(tenant: str) -> Connector:
    """The connector of a configured tenant's target (ConfigurationError if the tenant is not configured)."""
    settings = get_settings()
    config = settings.tenant(tenant)
    return CONNECTORS[config.target.value](config, settings, get_client(), get_redis(settings), limiter())


class BatchShape(NamedTuple):
    """Where a tenant's batches of one kind go, and how many documents one request takes."""

    target: str
    max_docs: int


def batch_shape(tenant: str, kind: str) -> BatchShape:
    """The target and documents per request of a tenant's batches of `kind`."""
    settings = get_settings()
    try:
        target = settings.tenant(tenant).target.value
    except ConfigurationError:
        return BatchShape("softone", settings.batch_max_docs)  # its documents fail at intake; nothing reaches a batch
    return BatchShape(target, CONNECTORS[target].max_batch_docs(settings, DocumentKind(kind)))


@lru_cache(maxsize=1)
def limiter() -> RateLimiter:
    settings = get_settings()
    return RateLimiter(get_redis(settings), settings.key_prefix, settings.rate_limit_margin_seconds)


def sender_id() -> str:
    """Who holds a batch's sending lease: host and pid (diagnostics only)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=1)
def intake() -> IntakeQueue:
    settings = get_settings()
    return IntakeQueue(get_redis(settings), settings)


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    settings = get_settings()
    return Dispatcher(get_redis(settings), settings)


@lru_cache(maxsize=1)
def lookalikes() -> LookalikeHolds:
    settings = get_settings()
    return LookalikeHolds(get_redis(settings), settings)
