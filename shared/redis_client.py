"""Every Redis client Taskdeck makes, straight to REDIS_URL or through Sentinel, and how to tell Redis is new.

With REDIS_SENTINELS and REDIS_SENTINEL_MASTER set, each connection asks the sentinels where the master
is (redis-py's SentinelConnectionPool), so after a failover the next command reaches the new master;
REDIS_URL then only gives the database number and credentials. Cache, denylist, auth versions, the
arq queue and the rate limits (``limits``' own sentinel storage, never reading from a replica) all go
through here, so none of them can keep talking to a demoted or dead master.

Redis is not the truth of anything (jobs, sessions and revocations live in PostgreSQL), but some
processes remember things while Redis holds them. ``RedisIdentity`` tells them when the Redis they
talk to is not the one they saw last: another master (a failover or a restart: new ``run_id``) or
the same one emptied (FLUSHALL, eviction: the marker key is gone).
"""
from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import unquote, urlsplit

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from shared.config import Settings
from shared.observability import metrics

logger = logging.getLogger("app.redis")

TIMEOUT = 2.0  # a Redis outage must cost speed, not hang requests
MAX_CONNECTIONS = 100
MARKER_KEY = "taskdeck:redis-epoch"


class _CountedConnection(Connection):
    async def on_connect(self) -> None:
        await super().on_connect()
        metrics.REDIS_CONNECTS.inc()


class _CountedSentinelConnection(SentinelManagedConnection):
    async def on_connect(self) -> None:
        await super().on_connect()
        metrics.REDIS_CONNECTS.inc()


def _url_options(settings: Settings) -> dict[str, Any]:
    parts = urlsplit(settings.redis_url)
    path = parts.path.strip("/")
    return {"db": int(path) if path.isdigit() else 0, "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None}


def connection_pool(settings: Settings, *, timeout: float = TIMEOUT,
                    max_connections: int = MAX_CONNECTIONS) -> ConnectionPool:
    if not settings.redis_sentinels:
        return ConnectionPool.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                       max_connections=max_connections, connection_class=_CountedConnection)
    options = _url_options(settings)
    sentinel = Sentinel(list(settings.redis_sentinels),
                        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout})
    return SentinelConnectionPool(settings.redis_sentinel_master, sentinel, socket_timeout=timeout,
                                  socket_connect_timeout=timeout, max_connections=max_connections,
                                  connection_class=_CountedSentinelConnection, **options)


def client(settings: Settings, *, timeout: float = TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> ArqRedis:
    """A redis client that also enqueues arq jobs (ArqRedis *is* a redis client); close with ``aclose()``."""
    return ArqRedis.from_pool(connection_pool(settings, timeout=timeout, max_connections=max_connections))


def arq_settings(settings: Settings) -> RedisSettings:
    """arq's own form of the same, for code that hands settings to arq (its sentinel mode when configured)."""
    if not settings.redis_sentinels:
        return RedisSettings.from_dsn(settings.redis_url)
    options = _url_options(settings)
    return RedisSettings(host=list(settings.redis_sentinels), sentinel=True,  # type: ignore[arg-type]
                         sentinel_master=settings.redis_sentinel_master or "", database=options["db"],
                         username=options["username"], password=options["password"])


def limits_storage(settings: Settings, *, key_prefix: str, pool: ConnectionPool) -> Any:
    """The rate limits' storage: sharing ``pool`` for a plain Redis; ``limits``' sentinel storage otherwise."""
    from limits.aio.storage import RedisSentinelStorage, RedisStorage

    if not settings.redis_sentinels:
        scheme, _, rest = settings.redis_url.partition("://")
        uri = ("async+redis+unix" if scheme == "unix" else f"async+{scheme}") + "://" + rest
        return RedisStorage(uri, implementation="redispy", key_prefix=key_prefix, connection_pool=pool)
    hosts = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
    options = {k: v for k, v in _url_options(settings).items() if v is not None}
    # use_replicas=False: a replica lags the master, and a limit read there would let a burst through.
    return RedisSentinelStorage(f"async+redis+sentinel://{hosts}/{settings.redis_sentinel_master}",
                                implementation="redispy", use_replicas=False, key_prefix=key_prefix,
                                sentinel_kwargs={"socket_timeout": TIMEOUT}, socket_timeout=TIMEOUT,
                                socket_connect_timeout=TIMEOUT, **options)


def describe(settings: Settings) -> str:
    """For logs and banners: where Redis is found (no credentials)."""
    if settings.redis_sentinels:
        hosts = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"sentinels {hosts} master {settings.redis_sentinel_master}"
    return settings.redis_url


class RedisIdentity:
    """Which Redis this process talks to: (the server's run_id, the marker key's value).

    ``changed()`` says whether that differs from the last call's answer, creating the marker when it is
    missing (NX: concurrent processes agree on one). The first call always says changed: a process that
    just started knows nothing about what Redis held before.
    """

    def __init__(self) -> None:
        self.seen: tuple[str, str] | None = None

    async def current(self, redis: Any) -> tuple[str, str]:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.info("server")
            pipe.get(MARKER_KEY)
            info, marker = await pipe.execute()
        if marker is None:
            await redis.set(MARKER_KEY, secrets.token_hex(8), nx=True)
            marker = await redis.get(MARKER_KEY)
        return str(info.get("run_id", "")), (marker or b"").decode() if isinstance(marker, bytes) else str(marker)

    async def changed(self, redis: Any) -> bool:
        now = await self.current(redis)
        before, self.seen = self.seen, now
        if before is not None and before != now:
            what = "another master" if before[0] != now[0] else "emptied"
            logger.warning("Redis is new (%s): dropping what this process remembered from it", what)
            metrics.REDIS_NEW.inc()
        return before != now
