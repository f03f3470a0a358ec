"""/metrics for the web tier, and the request observations (prometheus-client directly).

aiohttp-prometheus-exporter labels every series with the client address (unbounded cardinality),
cannot share a registry between two apps, and is unmaintained; a few lines here do the job. Labels
are the route *template* (``/api/v1/tasks/{id}``), never the raw path. The families live in
shared/observability/metrics.py, shared with the worker.
"""
from __future__ import annotations

from typing import Any

import functools

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.observability import metrics, samplers
from web.keys import DB, REDIS


# The children for each label set, looked up once: ``labels()`` takes a lock and builds tuples on every
# call, which the per-request path paid three times. Children are never removed, so a remembered one
# stays the one exported. Bounded: methods, route templates and statuses are few.
@functools.lru_cache(maxsize=4096)
def _requests_child(method: str, route: str, status: int) -> Any:
    return metrics.HTTP_REQUESTS.labels(method, route, str(status))


@functools.lru_cache(maxsize=4096)
def _latency_child(method: str, route: str) -> Any:
    return metrics.HTTP_LATENCY.labels(method, route)


@functools.lru_cache(maxsize=4096)
def in_flight(method: str, route: str) -> Any:
    return metrics.HTTP_IN_FLIGHT.labels(method, route)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    _requests_child(method, route, status).inc()
    _latency_child(method, route).observe(seconds)


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    await samplers.sample_all(request.app[DB], request.app[REDIS])
    response = web.Response(body=generate_latest(metrics.registry()))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
