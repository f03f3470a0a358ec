"""Prometheus metrics with prometheus-client directly.

aiohttp-prometheus-exporter labels every series with the client address (unbounded cardinality),
cannot share a registry between two apps, and is unmaintained; a few lines here do the job. Labels
are the route *template* (``/api/v1/tasks/{id}``), never the raw path.
"""
from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

REQUESTS = Counter("taskdeck_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("taskdeck_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def _registry() -> CollectorRegistry:
    # With several processes (gunicorn, reuse_port), each writes to PROMETHEUS_MULTIPROC_DIR; merge them.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    response = web.Response(body=generate_latest(_registry()))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
