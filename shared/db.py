"""asyncpg pools: one write pool on the primary, one read pool per replica (round-robin)."""
from __future__ import annotations

import itertools
import json
import logging

import asyncpg

from shared.config import Settings

logger = logging.getLogger("app.db")


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


async def create_pool(dsn: str, settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                                     init=_init_connection, reset=_reset_connection, command_timeout=60)
    assert pool is not None
    return pool


class Database:
    """Routes reads and writes.

    ``write`` is the primary: every write, and every read that must see the caller's own latest
    write (read-your-writes, auth checks). ``read()`` may be a lagging replica.
    """

    def __init__(self, write: asyncpg.Pool, replicas: list[asyncpg.Pool] | None = None,
                 replica_urls: tuple[str, ...] = ()) -> None:
        self.write = write
        self.replicas = replicas or []
        self.replica_urls = replica_urls
        self._cycle = itertools.cycle(self.replicas) if self.replicas else None

    def read(self) -> asyncpg.Pool:
        return next(self._cycle) if self._cycle else self.write

    @classmethod
    async def connect(cls, settings: Settings) -> "Database":
        write = await create_pool(settings.database_url, settings)
        replicas = []
        try:
            for url in settings.database_replica_urls:
                replicas.append(await create_pool(url, settings))
        except BaseException:
            for pool in [write, *replicas]:
                await pool.close()
            raise
        return cls(write, replicas, settings.database_replica_urls)

    async def close(self) -> None:
        for pool in [*self.replicas, self.write]:
            await pool.close()
