"""Operations: liveness, readiness (every dependency), Prometheus metrics."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable

from aiohttp import web

from web import metrics
from web.keys import DB, REDIS
from web.request import json_response

CHECK_TIMEOUT = 2.0
# arq writes this key every `health_check_interval` while a worker runs (it expires if none does).
WORKER_HEALTH_KEY = "arq:queue:health-check"


async def _probe(check: Awaitable[Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; the reason is reported, not raised
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


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

    A replica that is down or lagging does not make the process unready: reads then use the primary.
    ---
    tags: [operations]
    responses:
      200: {description: Ready}
      503: {description: A required dependency is down}
    """
    db, redis = request.app[DB], request.app[REDIS]
    primary, redis_check, worker = await asyncio.gather(
        _probe(db.write.fetchval("SELECT 1")),
        _probe(redis.ping()),
        _probe(_worker_alive(redis)),
    )
    checks = {
        "database": primary,
        # From the background poller (shared/replicas.py), named by position: no host names here.
        "replicas": [replica.describe() for replica in db.replicas],
        "redis": redis_check,
        "worker": worker,
    }
    ok = primary["status"] == "up" and redis_check["status"] == "up"
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


async def _worker_alive(redis: Any) -> None:
    if not await redis.exists(WORKER_HEALTH_KEY):
        raise LookupError("no worker heartbeat")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/ready", ready, name="ready")
    app.router.add_get("/metrics", metrics.get_metrics, name="metrics")
