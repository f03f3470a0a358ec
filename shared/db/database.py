"""asyncpg pools, and the one place that decides where a read runs.

Writes go to ``db.write`` (the primary). A read made for a user goes through ``db.read_as(user_id, fn)``:
it runs on a replica only when that replica has replayed the user's last write (read-your-writes by
WAL position, remembered in Redis) and is behind by at most REPLICA_MAX_LAG_SECONDS; otherwise, or
when the replica fails the query, on the primary. The reasoning is in docs/replicas.md.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable, TypeVar

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import redis_client
from shared.config import Settings
from shared.db.replicas import READS, Replica, ReplicaSet

logger = logging.getLogger("app.db")
T = TypeVar("T")

WRITE_LSN_KEY = "db:write-lsn:{}"
# Where a user's write ended in the WAL. The *insert* position, not pg_current_wal_lsn() (the *write*
# position): with synchronous_commit=off a commit returns before its record is written out, so the write
# position read just after it can still be short of the commit record, and a replica that has replayed up
# to there lacks the row. The insert position is at or past every record already inserted, our commit
# included, whatever the commit mode; a replica reaches it once the WAL writer has flushed (a moment later).
COMMITTED_LSN = "SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint"
# Longer than any replica we would still read from can be behind: once the key expires, every replica
# within the lag ceiling has that write.
WRITE_LSN_TTL_MARGIN = 60
REDIS_TIMEOUT = 0.5
# Past any real WAL position: recorded when a write's position cannot be read, it keeps the user's reads on
# the primary until the key expires.
UNKNOWN_POSITION = 2**62
CONNECT_TIMEOUT = 5.0  # per host: a multi-host DSN tries the next one after this
# Keep the larger position: two concurrent writes of one user may finish in either order.
_REMEMBER_MAX = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else redis.call('EXPIRE', KEYS[1], ARGV[2]) end
"""
# A replica's failure that says nothing about the replica: the query's input is bad, the primary would
# refuse it too (SQLSTATE class 22, data exception). Anything else benches the replica.
_INPUT_ERROR_CLASS = "22"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Cheaper than asyncpg's default reset (RESET ALL, UNLISTEN, advisory unlock: a round trip per release).

    Pooled connections never take session-level state: no SET, LISTEN or session advisory locks (the
    migration lock uses its own connection). Only an unfinished transaction needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, settings: Settings, *, min_size: int | None = None) -> asyncpg.Pool:
    # Behind PgBouncer in transaction pooling, consecutive statements may reach different server
    # connections, so named prepared statements (asyncpg's cache) would vanish: use unnamed ones.
    cache = {"statement_cache_size": 0} if settings.database_pooler == "pgbouncer" else {}
    # command_timeout and the connect timeout bound what a dead or partitioned server can cost a caller
    # (shared/failover.py turns the TimeoutError into a 503). A DSN naming several hosts with
    # target_session_attrs=read-write finds whichever is primary now, on every new connection.
    pool = await asyncpg.create_pool(dsn, min_size=settings.db_pool_min if min_size is None else min_size,
                                     max_size=settings.db_pool_max, init=_init_connection,
                                     reset=_reset_connection, command_timeout=settings.db_command_timeout,
                                     timeout=CONNECT_TIMEOUT, **cache)
    assert pool is not None
    return pool


class Database:
    """The primary pool, the replicas with their live positions, and where each user last wrote."""

    def __init__(self, write: asyncpg.Pool, replicas: ReplicaSet | None = None, redis: Redis | None = None,
                 lsn_ttl: int = WRITE_LSN_TTL_MARGIN) -> None:
        self.write = write
        self.replica_set = replicas
        self._redis = redis
        self._lsn_ttl = lsn_ttl
        self._remember_max = redis.register_script(_REMEMBER_MAX) if redis is not None else None

    @property
    def replicas(self) -> list[Replica]:
        return self.replica_set.replicas if self.replica_set else []

    def named_pools(self) -> list[tuple[str, asyncpg.Pool]]:
        """Every pool with its metrics label: the primary's, then each replica's."""
        return [("primary", self.write), *((replica.name, replica.pool) for replica in self.replicas)]

    async def read_as(self, user_id: int | None, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run the read-only ``fn(conn)`` on a replica that has the user's last write, else on the primary.

        ``fn`` may run twice (replica failed, then primary), so it must not write anything anywhere.
        """
        replica = await self._replica_for(user_id)
        if replica is not None:
            try:
                async with replica.pool.acquire() as conn:
                    result = await fn(conn)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
                if getattr(exc, "sqlstate", "") and exc.sqlstate[:2] == _INPUT_ERROR_CLASS:  # type: ignore
                    raise
                assert self.replica_set is not None
                self.replica_set.failed(replica, exc)
            else:
                READS.labels(replica.name).inc()
                return result
        async with self.write.acquire() as conn:
            result = await fn(conn)
        READS.labels("primary").inc()
        return result

    async def wrote(self, user_id: int) -> None:
        """Remember the primary's WAL position after ``user_id``'s write (call once it has committed)."""
        if self._remember_max is None:
            return
        try:
            lsn = await self.write.fetchval(COMMITTED_LSN)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.InternalClientError):
            # The primary went away after the write (a failover: TargetServerAttributeNotMatched, a closed
            # connection...). Its position is unknown, so no replica may serve this user until the key expires.
            logger.warning("write position of user %s unknown; reads stay on the primary", user_id, exc_info=True)
            lsn = UNKNOWN_POSITION
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                await self._remember_max(keys=[WRITE_LSN_KEY.format(user_id)], args=[lsn, self._lsn_ttl])
        except (RedisError, OSError, asyncio.TimeoutError):
            # Reads still find the primary whenever Redis is down; only a Redis that fails now and answers
            # on the next read could let that read see a replica without this write.
            logger.warning("could not record the write position of user %s", user_id, exc_info=True)

    async def _replica_for(self, user_id: int | None) -> Replica | None:
        if self.replica_set is None or not (candidates := self.replica_set.candidates()):
            return None
        needed = 0
        if user_id is not None:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT):
                    raw = await self._redis.get(WRITE_LSN_KEY.format(user_id))  # type: ignore[union-attr]
            except (RedisError, OSError, asyncio.TimeoutError):
                return None  # cannot tell what the user wrote last: the primary has it all
            needed = int(raw) if raw else 0
        return self.replica_set.choose(candidates, needed)

    @classmethod
    async def connect(cls, settings: Settings) -> "Database":
        write = await create_pool(settings.database_url, settings)
        if not settings.database_replica_urls:
            return cls(write)
        replicas: list[Replica] = []
        redis = redis_client.client(settings, timeout=REDIS_TIMEOUT)
        try:
            for index, url in enumerate(settings.database_replica_urls):
                # min_size 0: a replica that is down at start must not keep the process from starting.
                replicas.append(Replica(f"replica-{index}", await create_pool(url, settings, min_size=0)))
            replica_set = ReplicaSet(write, replicas, max_lag=settings.replica_max_lag_seconds)
            await replica_set.start()
        except BaseException:
            for pool in [write, *(r.pool for r in replicas)]:
                await pool.close()
            await redis.aclose()
            raise
        return cls(write, replica_set, redis, lsn_ttl=int(settings.replica_max_lag_seconds) + WRITE_LSN_TTL_MARGIN)

    async def close(self) -> None:
        if self.replica_set is not None:
            await self.replica_set.stop()
        for pool in [*(r.pool for r in self.replicas), self.write]:
            await pool.close()
        if self._redis is not None:
            await self._redis.aclose()
