"""A Redis cache for hot per-user reads that is never the source of truth.

Every entry (``taskdeck:cache:{owner}:{name}:{variant}``) is stored with the owner's *version token*
of when it was filled, and is served only while that is still the owner's token. Every write that can
change a cached answer replaces the token (``invalidate``), so old entries are never served again and
are overwritten by the next fill or expire; there is no key scan and no delete. A hit is one round
trip: the token and the entry in one MGET (the token inside the value, not in the key name, is what
makes that possible without a script).

Why it is never wrong:

- The fill race is closed by order: the token is read *before* the database query, and the result is
  stored with that token. A write that commits meanwhile replaces the token after its commit, so a
  fill that may have read pre-write rows carries a token that no longer matches (if it overwrites a
  newer fill's entry, that costs one more miss, never a stale answer).
- Fills read the primary, never a replica: an entry is served to later requests, and a lagging replica
  could put pre-write rows under the post-write token.
- Tokens are random, never counters: if a version key is evicted, a new token cannot collide with the
  token of entries still stored (a counter restarting at 1 could).
- Redis failing on a read costs a database query. Redis failing on an *invalidation* (after the write
  committed) puts the owner on this process's pending list: its reads skip the cache until a retry
  (at the next read, or the background flush every second) replaces the token. Entries also expire
  after ``CACHE_TTL`` seconds, which bounds the one case left: Redis unreachable from this process but
  reachable from another one that still serves the old entry.
- Answers that time alone changes (overdue counts) are stored no longer than until that change.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Awaitable, Callable, Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.observability import metrics

logger = logging.getLogger("app.cache")
ERRORS = (RedisError, OSError, asyncio.TimeoutError)
VERSION_TTL = 7 * 86400  # refreshed by every write; an idle owner's token may expire (a new one is made)
FLUSH_INTERVAL = 1.0

# fill() returns the body and how many seconds it stays true without a write (None: until a write).
Fill = Callable[[], Awaitable[tuple[str, float | None]]]


class OwnerCache:
    """Entries per owner (a user id), invalidated as a whole by any write to that owner's data."""

    def __init__(self, redis: Redis, *, ttl: int, enabled: bool = True) -> None:
        self.redis, self.ttl, self.enabled = redis, ttl, enabled
        self.pending: set[int] = set()

    @staticmethod
    def _version_key(owner_id: int) -> str:
        return f"taskdeck:cache:v:{owner_id}"

    async def _new_token(self, key: str) -> bytes | None:
        """First use, or the version key expired: any fresh random token will do (NX: a concurrent
        invalidation's token wins)."""
        await self.redis.set(key, secrets.token_hex(8), nx=True, ex=VERSION_TTL)
        return await self.redis.get(key)

    def keys(self, owner_id: int, name: str, variant: str = "") -> tuple[str, str]:
        """The two keys ``get`` reads: the owner's version token and the entry."""
        return self._version_key(owner_id), f"taskdeck:cache:{owner_id}:{name}:{variant}"

    async def get(self, owner_id: int, name: str, fill: Fill, *, variant: str = "",
                  early: Mapping[str, bytes | None] | None = None) -> str:
        """The cached ``name`` of ``owner_id``, or ``fill()``'s answer (then stored for the next caller).

        :param name: what is cached (also the metrics label: keep it a constant)
        :param variant: what else the answer depends on (e.g. the page size)
        :param early: values of ``keys(...)`` this request already read (it saves the round trip); read
            before the fill, like our own read, so the same order argument holds
        """
        if not self.enabled:
            return (await fill())[0]
        if self.pending:
            await self.flush()
            early = None  # the flush may just have replaced a token read before it
        if owner_id in self.pending:  # an invalidation has not reached Redis: the cache is suspect
            metrics.CACHE_MISSES.labels(name).inc()
            return (await fill())[0]
        version_key, key = self.keys(owner_id, name, variant)
        try:
            if early is not None and version_key in early and key in early:
                token, cached = early[version_key], early[key]
            else:
                token, cached = await self.redis.mget(version_key, key)
            if token is None:
                token, cached = await self._new_token(version_key), None
        except ERRORS:
            metrics.CACHE_ERRORS.labels(name).inc()
            logger.warning("cache read failed for %s; using the database", name, exc_info=True)
            return (await fill())[0]
        if cached is not None and token:
            stored_token, _, body_bytes = cached.partition(b"\n")
            if stored_token == token:
                metrics.CACHE_HITS.labels(name).inc()
                return body_bytes.decode()
        metrics.CACHE_MISSES.labels(name).inc()
        body, valid_for = await fill()
        ttl = int(min(self.ttl, valid_for if valid_for is not None else self.ttl))
        if token and ttl >= 1:
            try:
                await self.redis.set(key, token + b"\n" + body.encode(), ex=ttl)
            except ERRORS:
                metrics.CACHE_ERRORS.labels(name).inc()
        return body

    async def invalidate(self, *owner_ids: int) -> None:
        """Call after the write committed: entries stored before now are never served again.

        A change to a shared project names every member (``shared.tasks.Written.audience``): their new
        tokens go out in one pipelined round trip, however many there are.
        """
        if not owner_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for owner_id in owner_ids:
                    pipe.set(self._version_key(owner_id), secrets.token_hex(8), ex=VERSION_TTL)
                await pipe.execute()
        except ERRORS:
            metrics.CACHE_ERRORS.labels("invalidate").inc()
            logger.error("cache invalidation failed for owners %s; retrying in the background",
                         sorted(owner_ids)[:20], exc_info=True)
            self.pending.update(owner_ids)

    async def flush(self) -> None:
        """Retry the invalidations that failed; an owner stays pending until its new token is stored."""
        for owner_id in list(self.pending):
            try:
                await self.redis.set(self._version_key(owner_id), secrets.token_hex(8), ex=VERSION_TTL)
            except ERRORS:
                return
            self.pending.discard(owner_id)
