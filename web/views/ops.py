"""Operations: liveness, readiness (every dependency), Prometheus metrics."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable
from urllib.parse import urlsplit

from aiohttp import web

from shared.storage import StorageError
from shared.workers import live_workers
from web import metrics
from web.keys import DB, REDIS, STORAGE
from web.request import json_response

CHECK_TIMEOUT = 2.0


async def _probe(check: Awaitable[Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT)
    except StorageError as exc:  # its message is the point: which bucket, which problem (no secrets)
        return {"status": "down", "error": type(exc).__name__, "detail": str(exc)[:300]}
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; the reason is reported, not raised
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. Touches nothing external.
    ---
    tags: [operations]
    responses:
      200: {description: Alive}
    """
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when the primary database and Redis answer, else 503; replicas and worker are reported.
    ---
    tags: [operations]
    responses:
      200: {description: Ready}
      503: {description: A required dependency is down}
    """
    db, redis = request.app[DB], request.app[REDIS]
    alive: list[int] = []
    primary, redis_check, worker, storage, *replicas = await asyncio.gather(
        _probe(db.write.fetchval("SELECT 1")),
        _probe(redis.ping()),
        _probe(_count_workers(redis, alive)),
        _probe(request.app[STORAGE].check()),
        *(_probe(pool.fetchval("SELECT 1")) for pool in db.replicas),
    )
    checks = {
        "database": primary,
        "replicas": [{"url": _redacted(url), **check} for url, check in zip(db.replica_urls, replicas)],
        "redis": redis_check,
        # Each `taskdeck worker` keeps its own heartbeat key: how many are alive, not just "one is".
        "worker": {**worker, "alive": alive[0] if alive else 0},
        "storage": storage,
    }
    # Storage is reported, not required (API.md: 200 iff primary and Redis answer): an S3 outage must
    # not take every web process out of the load balancer, when only downloads need it.
    ok = primary["status"] == "up" and redis_check["status"] == "up"
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


async def _count_workers(redis: Any, out: list[int]) -> None:
    out.append(len(await live_workers(redis)))
    if not out[0]:
        raise LookupError("no worker heartbeat")



def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/ready", ready, name="ready")
    app.router.add_get("/metrics", metrics.get_metrics, name="metrics")
