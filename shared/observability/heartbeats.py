"""Which `taskdeck worker` processes are alive: one heartbeat per worker, readable by the web tier.

Each worker has an id (host-pid-random) and, every HEARTBEAT_INTERVAL, (1) writes arq's health
string to its own key ``taskdeck:worker:<id>`` with a TTL and (2) scores itself in the sorted set
``taskdeck:workers`` with the time its heartbeat expires. A clean stop removes both at once; a
killed worker drops out when its expiry passes. One shared key (arq's default) would be blanked
for everyone by the first worker that stops cleanly.

The sorted set is the index: counting live workers is one ZRANGEBYSCORE, never a SCAN.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any

WORKERS_KEY = "taskdeck:workers"
WORKER_KEY_PREFIX = "taskdeck:worker:"
HEARTBEAT_INTERVAL = 5  # seconds between beats (arq's health_check_interval)
# A worker counts as alive this long after its last beat: two missed beats, so a busy loop is not "dead".
HEARTBEAT_TTL = 2 * HEARTBEAT_INTERVAL + 1


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def worker_key(worker_id: str) -> str:
    return WORKER_KEY_PREFIX + worker_id


async def beat(redis: Any, worker_id: str, now: float | None = None) -> None:
    """Mark ``worker_id`` alive for HEARTBEAT_TTL more seconds (arq writes the per-worker key itself)."""
    await redis.zadd(WORKERS_KEY, {worker_id: (now or time.time()) + HEARTBEAT_TTL})


async def forget(redis: Any, worker_id: str) -> None:
    """A clean stop: this worker is gone now, the others stay listed."""
    await redis.zrem(WORKERS_KEY, worker_id)


async def live_workers(redis: Any) -> dict[str, str]:
    """Every live worker's id and latest health line (``j_complete=... queued=...``)."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", now)  # expired beats: killed or hung workers
        pipe.zrangebyscore(WORKERS_KEY, now, "+inf")
        _, ids = await pipe.execute()
    names = [i.decode() if isinstance(i, bytes) else i for i in ids]
    if not names:
        return {}
    values = await redis.mget([worker_key(name) for name in names])
    return {name: (value.decode() if isinstance(value, bytes) else value or "")
            for name, value in zip(names, values)}
