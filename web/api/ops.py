"""Operations: liveness, readiness (every dependency), Prometheus metrics."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable

from aiohttp import web
from marshmallow import INCLUDE, Schema, fields, validate

from shared.storage import StorageError
from shared.observability.heartbeats import live_workers
from web import metrics
from web.keys import DB, REDIS, STORAGE
from web.ops_access import may_see_details, require_ops_token, strip_details
from web.openapi import api, ok
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


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class CheckSchema(Schema):
    class Meta:
        unknown = INCLUDE  # documented as open: a dependency's report may grow (replica lag, ...)

    status = fields.String(required=True, validate=validate.OneOf(["up", "down"]))
    latency_ms = fields.Float()
    error = fields.String()


class ReplicaCheckSchema(CheckSchema):
    # From the background poller (shared/db/replicas.py): named by position, never by host.
    name = fields.String(metadata={"example": "replica-0"})
    status = fields.String(required=True, validate=validate.OneOf(["up", "lagging", "down", "unknown"]))
    lag_seconds = fields.Float(allow_none=True)
    replay_lsn = fields.String()


class ChecksSchema(Schema):
    class Meta:
        unknown = INCLUDE

    database = fields.Nested(CheckSchema, required=True)
    replicas = fields.List(fields.Nested(ReplicaCheckSchema), required=True)
    redis = fields.Nested(CheckSchema, required=True)
    worker = fields.Nested(CheckSchema, required=True)


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    checks = fields.Nested(ChecksSchema, required=True)


@api(tags=("operations",), responses={200: ok("Alive", HealthSchema)})
async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. Touches nothing external."""
    return json_response({"status": "ok"})


@api(tags=("operations",), responses={200: ok("Ready", ReadySchema),
                                      503: ok("A required dependency is down", ReadySchema)})
async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when the primary database and Redis answer, else 503; replicas and worker are reported.

    A replica that is down or lagging does not make the process unready: reads then use the primary.
    """
    db, redis = request.app[DB], request.app[REDIS]
    alive: list[int] = []
    primary, redis_check, worker, storage, *replicas = await asyncio.gather(
        _probe(db.write.fetchval("SELECT 1")),
        _probe(redis.ping()),
        _probe(_count_workers(redis, alive)),
        _probe(request.app[STORAGE].check()),
    )
    checks = {
        "database": primary,
        # From the background poller (shared/db/replicas.py), named by position: no host names here.
        "replicas": [replica.describe() for replica in db.replicas],
        "redis": redis_check,
        # Each `taskdeck worker` keeps its own heartbeat key: how many are alive, not just "one is".
        "worker": {**worker, "alive": alive[0] if alive else 0},
        "storage": storage,
    }
    # Storage is reported, not required (API.md: 200 iff primary and Redis answer): an S3 outage must
    # not take every web process out of the load balancer, when only downloads need it.
    ok = primary["status"] == "up" and redis_check["status"] == "up"
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    # Host names, latencies and counts only for the METRICS_TOKEN holder.
    return json_response(body if may_see_details(request) else strip_details(body), status=200 if ok else 503)


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    require_ops_token(request)
    return await metrics.get_metrics(request)


async def _count_workers(redis: Any, out: list[int]) -> None:
    out.append(len(await live_workers(redis)))
    if not out[0]:
        raise LookupError("no worker heartbeat")



def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/ready", ready, name="ready")
    app.router.add_get("/metrics", get_metrics, name="metrics")
