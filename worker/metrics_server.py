"""The worker's /metrics: a tiny aiohttp server on WORKER_METRICS_PORT, on the worker's own event loop.

Why a port rather than only the multiprocess directory: a worker usually runs on another host (or
pod) than any web process, so nothing else could read its files; each worker is its own scrape target.
With several workers on one host, give them one PROMETHEUS_MULTIPROC_DIR (not the web's) and the same
port: they bind it with SO_REUSEPORT, and whichever answers serves the merged numbers of all of them.
"""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.observability import metrics
from shared.security import bearer_matches

TOKEN = web.AppKey("metrics_token", str)


async def get_metrics(request: web.Request) -> web.Response:
    """Like the web tier's /metrics: with METRICS_TOKEN set, only for ``Authorization: Bearer <token>``."""
    token = request.app.get(TOKEN)
    if token and not bearer_matches(request.headers.get("Authorization", ""), token):
        return web.json_response({"type": "about:blank", "title": "Unauthorized", "status": 401,
                                  "detail": "This endpoint needs Authorization: Bearer <METRICS_TOKEN>"},
                                 status=401, content_type="application/problem+json",
                                 headers={"WWW-Authenticate": "Bearer"})
    response = web.Response(body=generate_latest(metrics.registry()))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def serve_metrics(port: int, host: str = "0.0.0.0", token: str | None = None) -> web.AppRunner:
    app = web.Application()
    if token:
        app[TOKEN] = token
    app.router.add_get("/metrics", get_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=True).start()
    return runner
