"""arq's Worker, made to outlive Redis and to be one of many.

- **Redis outages**: arq 0.28 lets a ConnectionError out of its poll loop and the process exits. Here
  the loop pauses instead: log once, count it, ping with exponential backoff (BACKOFF_START doubling
  up to BACKOFF_MAX), resume when Redis answers. redis-py reconnects by itself on the next command.
  Jobs already running keep running (they need PostgreSQL, not Redis); what they could not tell arq is
  covered by the job table (shared/mail/outbox.py, worker/jobs/cleanup.py sweepers).
- **Its own heartbeat**: arq's health key is per worker (``taskdeck:worker:<id>``) and indexed in a
  sorted set (shared/observability/heartbeats.py), so /ready counts live workers and a clean stop removes only itself.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import datetime
from typing import Any

from arq import Worker
from arq.connections import ArqRedis, create_pool
from arq.utils import poll
from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import redis_client
from shared.observability import heartbeats

logger = logging.getLogger("app.worker")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
BACKOFF_START = 0.5
BACKOFF_MAX = 5.0
REDIS_OUTAGES = Counter("taskdeck_worker_redis_outages_total",
                        "Times a worker lost Redis and paused until it came back")


class ResilientWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.worker_id = heartbeats.new_worker_id()
        kwargs.setdefault("health_check_key", heartbeats.worker_key(self.worker_id))
        super().__init__(*args, **kwargs)
        self.redis_outages = 0

    async def main(self) -> None:
        # arq's main, with a connection that waits for Redis and a poll loop that survives it going away.
        if self._pool is None:
            self._pool = await self._connect()
        logger.info("worker %s starting: %d functions", self.worker_id, len(self.functions))
        self.ctx["redis"] = self.pool
        self.ctx["worker_id"] = self.worker_id
        if self.on_startup:
            await self.on_startup(self.ctx)
        async for _ in poll(self.poll_delay_s):
            try:
                await self._poll_iteration()
                if self.burst and await self._burst_done():
                    return
            except REDIS_DOWN as exc:
                await self._wait_for_redis(exc)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except REDIS_DOWN:
            # arq takes a slot (semaphore + counter) before its Redis round trips for a job and frees it
            # only in the job task's callback; failing in between would leak one slot per outage.
            self._release_sem_dec_counter_on_complete()
            raise

    async def _burst_done(self) -> bool:
        if 0 <= self.max_burst_jobs <= self._jobs_started() or await self.pool.zcard(self.queue_name) == 0:
            await asyncio.gather(*self.tasks.values())
            return True
        return False

    async def _connect(self) -> ArqRedis:
        assert self.redis_settings is not None
        settings = self.redis_settings
        settings.conn_retries = 0  # the backoff below replaces arq's five tries and exit
        delay, logged = BACKOFF_START, False
        while True:
            try:
                return await self._create_pool(settings)
            except (*REDIS_DOWN, RedisError) as exc:
                if not logged:
                    self._count_outage(exc, "at start")
                    logged = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _create_pool(self, settings: Any) -> ArqRedis:
        app_settings = self.ctx.get("settings")
        if app_settings is None:  # a bare worker (tests): arq's own connection
            return await create_pool(settings, job_serializer=self.job_serializer,
                                     job_deserializer=self.job_deserializer, default_queue_name=self.queue_name,
                                     expires_extra_ms=self.expires_extra_ms)
        # Ours: plain or through Sentinel with socket timeouts (arq's sentinel mode sets none, so a hung
        # master would hang the poll loop), and the same connection accounting as web.
        pool = redis_client.client(app_settings, timeout=max(5.0, self.poll_delay_s))
        pool.job_serializer, pool.job_deserializer = self.job_serializer, self.job_deserializer
        pool.default_queue_name, pool.expires_extra_ms = self.queue_name, self.expires_extra_ms
        try:
            await pool.ping()
        except BaseException:
            await pool.aclose()
            raise
        return pool

    def _count_outage(self, exc: BaseException, when: str) -> None:
        self.redis_outages += 1
        REDIS_OUTAGES.inc()
        logger.warning("worker %s: Redis unreachable %s (%s: %s); waiting for it, retrying with backoff",
                       self.worker_id, when, type(exc).__name__, exc)

    async def _wait_for_redis(self, exc: BaseException) -> None:
        self._count_outage(exc, "while polling")
        started, delay = time.monotonic(), BACKOFF_START
        while True:
            await asyncio.sleep(delay)
            try:
                await self.pool.ping()
                break
            except REDIS_DOWN:
                delay = min(delay * 2, BACKOFF_MAX)
        logger.info("worker %s: Redis is back after %.1fs; resuming", self.worker_id, time.monotonic() - started)
        self._last_health_check = 0  # beat now: /ready should see this worker again at once

    async def record_health(self) -> None:
        # arq's record_health, plus the outage count and the index entry for live_workers().
        now = time.time()
        if now - self._last_health_check < self.health_check_interval:
            return
        self._last_health_check = now
        ongoing = sum(not t.done() for t in self.tasks.values())
        queued = await self.pool.zcard(self.queue_name)
        info = (f"{datetime.now():%b-%d %H:%M:%S} j_complete={self.jobs_complete} j_failed={self.jobs_failed} "
                f"j_retried={self.jobs_retried} j_ongoing={ongoing} queued={queued} "
                f"redis_outages={self.redis_outages}")
        async with self.pool.pipeline(transaction=True) as pipe:
            pipe.psetex(self.health_check_key, heartbeats.HEARTBEAT_TTL * 1000, info.encode())
            pipe.zadd(heartbeats.WORKERS_KEY, {self.worker_id: now + heartbeats.HEARTBEAT_TTL})
            await pipe.execute()

    async def close(self) -> None:
        # arq's close, except that a Redis outage at shutdown must not skip on_shutdown (the database
        # pools), and the pool is closed with aclose() (close() is deprecated in redis-py 5).
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)  # as arq does: cancel what runs, stop the main task
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            await self.pool.delete(self.health_check_key)
            await heartbeats.forget(self.pool, self.worker_id)
        except (*REDIS_DOWN, RedisError):
            logger.warning("worker %s: Redis unreachable at shutdown; its heartbeat expires by itself",
                           self.worker_id)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None
