"""Gauges that must be sampled rather than counted: pools, replica lag, queue depth, worker heartbeat.

Both web and worker run ``sample_forever`` in the background (and the web samples again at each
scrape), so each process's gauges are current even in multiprocess mode, where a custom collector
would not be merged.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Awaitable, Callable, Iterable, Protocol

import asyncpg
from arq.constants import default_queue_name
from redis.asyncio import Redis

from shared.observability import metrics

logger = logging.getLogger("app.observe")
INTERVAL = 5.0
# Written by every worker each INTERVAL (shared.observability.samplers.beat); the web side turns it into an age.
HEARTBEAT_KEY = "taskdeck:worker:heartbeat"
HEARTBEAT_TTL = 7 * 86400
# 0 on a replica that has replayed everything it received; else how old its last replayed commit is.


class Pools(Protocol):
    """What is sampled of ``shared.db.database.Database`` (named here so observability need not import db)."""

    def named_pools(self) -> Iterable[tuple[str, asyncpg.Pool]]: ...


def sample_pools(db: Pools) -> None:
    for name, pool in db.named_pools():
        size, idle = pool.get_size(), pool.get_idle_size()
        # asyncpg has no public count of waiters; its holder queue is an asyncio.Queue whose getters wait.
        getters = getattr(getattr(pool, "_queue", None), "_getters", ())
        metrics.DB_POOL_SIZE.labels(name).set(size)
        metrics.DB_POOL_MAX.labels(name).set(pool.get_max_size())
        metrics.DB_POOL_IN_USE.labels(name).set(size - idle)
        metrics.DB_POOL_WAITING.labels(name).set(sum(1 for waiter in getters if not waiter.done()))


async def sample_redis(redis: Redis) -> None:
    """Queue depth and the age of the newest worker heartbeat (+Inf when there is none)."""
    try:
        depth = await redis.zcard(default_queue_name)
        beat = await redis.get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - Redis down: leave depth as it was, and say no worker is seen
        metrics.WORKER_HEARTBEAT_AGE.set(math.inf)
        return
    metrics.QUEUE_DEPTH.set(depth)
    metrics.WORKER_HEARTBEAT_AGE.set(max(0.0, time.time() - float(beat)) if beat else math.inf)


async def beat(redis: Redis) -> None:
    await redis.set(HEARTBEAT_KEY, repr(time.time()), ex=HEARTBEAT_TTL)


async def sample_all(db: Pools, redis: Redis) -> None:
    sample_pools(db)
    # Replica lag is measured by shared/db/replicas.py's poller (every 250 ms), not here.
    await sample_redis(redis)


class Periodic:
    """Runs ``step`` every ``interval`` seconds until ``stop()``.

    Stopped with an event, not by cancelling: a cancellation that lands inside redis-py may come out as
    a connection error, which the loop (rightly) survives, and the task would then never end.
    """

    def __init__(self, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        self.interval, self.step = interval, step
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> "Periodic":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.step()
            except Exception:  # noqa: BLE001 - background upkeep must never take the process down
                logger.warning("periodic %s failed", getattr(self.step, "__qualname__", self.step), exc_info=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def start(db: Pools, redis: Redis, *, worker: bool = False) -> Periodic:
    """Sample every INTERVAL seconds (a worker also writes its heartbeat first)."""
    async def step() -> None:
        if worker:
            await beat(redis)
        await sample_all(db, redis)

    return Periodic(INTERVAL, step).start()
