"""/metrics for the web tier, and the request observations (prometheus-client directly).

aiohttp-prometheus-exporter labels every series with the client address (unbounded cardinality),
cannot share a registry between two apps, and is unmaintained; a few lines here do the job. Labels
are the route *template* (``/api/v1/tasks/{id}``), never the raw path. The families live in
shared/metrics.py, shared with the worker.
"""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import metrics, observe
from web.keys import DB, REDIS


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
    metrics.HTTP_LATENCY.labels(method, route).observe(seconds)


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    await observe.sample_all(request.app[DB], request.app[REDIS])
    response = web.Response(body=generate_latest(metrics.registry()))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
