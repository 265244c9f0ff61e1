"""What the store raises when Redis fails, named here so that no caller needs to import redis.

Most store calls let Redis's own errors through as redis-py raises them: a caller that handles them catches
`REDIS_ERRORS` (any of them) or `OUTAGE_ERRORS` (Redis unreachable or too slow: worth waiting out). The Celery
broker on the same Redis raises them too.

The calls whose callers carry on without Redis, the ERP token cache's (worker/store/tokens.py), raise
`StoreUnavailable` instead: one type whatever went wrong (a connection, a timeout, a renewal lock not had or
lost), which names what it was.
"""

from __future__ import annotations

import redis

from worker.errors import StoreUnavailable

__all__ = ["OUTAGE_ERRORS", "REDIS_ERRORS", "StoreUnavailable"]

#: Any error of Redis's (redis-py's base class: connection, timeout, response, lock, watch errors...).
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)
#: Redis unreachable or answering too late: a restart or a failover, worth waiting out.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
