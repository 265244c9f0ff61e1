"""Per-process singletons the tasks share: settings, results store, HTTP client and connectors."""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from worker.buffer import CoalescingBuffer
from worker.connectors.softone import SoftOneConnector
from worker.http import get_client
from worker.inflight import InflightLimiter
from worker.intake import IntakeQueue
from worker.redis_client import get_redis
from worker.results import ResultsStore
from worker.settings import get_settings


@lru_cache(maxsize=1)
def store() -> ResultsStore:
    settings = get_settings()
    return ResultsStore(get_redis(settings), settings)


@lru_cache(maxsize=1)
def buffer() -> CoalescingBuffer:
    settings = get_settings()
    return CoalescingBuffer(get_redis(settings), settings)


def connector(tenant: str) -> SoftOneConnector:
    """The connector for a configured tenant (ConfigurationError if it is not configured)."""
    settings = get_settings()
    return SoftOneConnector(settings.tenant(tenant), settings, get_client(), get_redis(settings))


def sender_id() -> str:
    """Who holds a batch's sending lease: host and pid (diagnostics only)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@lru_cache(maxsize=1)
def intake() -> IntakeQueue:
    settings = get_settings()
    return IntakeQueue(get_redis(settings), settings)


@lru_cache(maxsize=1)
def inflight() -> InflightLimiter:
    settings = get_settings()
    return InflightLimiter(get_redis(settings), settings.key_prefix)
