"""One Redis client per process for our own keys (results, duplicate index, batches, tokens).

`RedisClient` names the client's type for the layers above, which hand a client to the store without
importing redis themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TypeAlias, cast

import redis
from redis.client import Pipeline
from redis.commands.core import Script

from worker.errors import ConfigurationError
from worker.redaction import redact_url
from worker.settings import Settings, get_settings

__all__ = ["Arg", "RedisClient", "as_text", "get_redis", "queue_script"]

#: The client the store works with (decode_responses: every reply is text).
RedisClient: TypeAlias = redis.Redis
#: Redis's (script) argument types: text and numbers.
Arg: TypeAlias = str | int | float


@lru_cache(maxsize=4)
def _client(url: str, ssl_options: tuple[tuple[str, object], ...] = ()) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=30,
        socket_connect_timeout=10,
        health_check_interval=30,
        **dict(ssl_options),
    )


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """The pooled client for `settings.redis_url` (shared by all threads of this process); TLS for `rediss://`
    with the ERPSYNC_REDIS_SSL_* options, a password from the URL."""
    settings = settings or get_settings()
    url = settings.redis_py_url()
    try:
        return _client(url, tuple(sorted(settings.redis_ssl_options().items())))
    except ValueError as exc:
        raise ConfigurationError(f"ERPSYNC_REDIS_URL {redact_url(url)!r} is not a Redis URL: {exc}") from None


def queue_script(
    pipe: Pipeline | redis.Redis, script: Script, keys: Sequence[str] = (), args: Sequence[Arg] = ()
) -> None:
    """Queue `script` on `pipe` as an EVAL of its text (on a client rather than a pipeline: run it at once).

    redis-py queues a registered script as EVALSHA and, before every execute of a pipeline holding one, asks
    the server SCRIPT EXISTS: one more round trip, on the send and intake hot paths, to guard against a server
    that lost its script cache (restarted). EVAL needs no such guard, and costs no compilation after the first
    call: Redis keeps compiled scripts by the SHA of their text. In a MULTI it is the safe choice, since an
    EVALSHA refused there (NOSCRIPT) would leave the rest of the transaction applied."""
    # The text is a str: every script is registered from worker/store/scripts.py's script_text.
    pipe.eval(cast(str, script.script), len(keys), *keys, *args)


def as_text(value: object) -> str:
    """A value Redis returned, as text: clients that do not decode responses hand back bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)
