"""The application factory: keys, one cleanup context per resource, middlewares, routes. No I/O at import."""
from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from shared.observability import metrics, samplers
from shared.cache import FLUSH_INTERVAL, OwnerCache
from shared.config import Settings
from shared.db.database import Database
from shared.storage import storage_from_settings
from web import live, middlewares, ratelimit, routes, security_headers
from web.keys import ARQ, CACHE, DB, REDIS, SESSION_CACHE, SETTINGS, STORAGE
from web.request import MAX_BODY
from web.session_cache import SessionCache

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    app[DB] = await Database.connect(app[SETTINGS])
    yield
    await app[DB].close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    # One client for cache, denylist, rate limits and the arq queue: ArqRedis *is* a redis client.
    # Short timeouts: a Redis outage must cost speed, not hang requests.
    pool = ConnectionPool.from_url(app[SETTINGS].redis_url, socket_connect_timeout=2, socket_timeout=2,
                                   max_connections=100)
    client = ArqRedis(pool)
    app[REDIS] = client
    app[ARQ] = client
    yield
    await client.aclose()
    await pool.aclose()


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    # Checked at start: a missing bucket or refused credentials stop the process with a clear
    # StorageError (launcher/cli.py prints it), rather than failing every download later.
    storage = storage_from_settings(app[SETTINGS])
    try:
        await storage.check()
    except BaseException:
        await storage.close()
        raise
    app[STORAGE] = storage
    yield
    await storage.close()


# --- protection and observability -------------------------------------------------------
async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    cache = app[CACHE] = OwnerCache(app[REDIS], ttl=app[SETTINGS].cache_ttl, enabled=app[SETTINGS].cache)
    flusher = samplers.Periodic(FLUSH_INTERVAL, cache.flush).start()  # retries failed invalidations
    yield
    await flusher.stop()


async def sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    sampler = samplers.start(app[DB], app[REDIS])
    yield
    await sampler.stop()
    metrics.process_exited(os.getpid())


# The order is written down, with reasons, in docs/architecture.md ("The request walk").
MIDDLEWARES = [
    middlewares.request_id_middleware,   # first: everything after it logs and answers with the id
    middlewares.metrics_middleware,      # sees every response, 429s and 500s included
    middlewares.write_position_middleware,  # after a user's write, remember its WAL position
    middlewares.compression_middleware,  # compresses whatever the inner ones produced, error bodies too
    middlewares.error_middleware,        # the one error mapping: inner raises become problem+json
    live.doorbell_middleware,            # inside it: only a write that did not raise rings the live streams
    security_headers.hostile_input_middleware,  # overlong path segments, broken forms -> 4xx
    ratelimit.ratelimit_middleware,      # raises RateLimited, mapped just outside; before any handler work
]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=list(MIDDLEWARES))
    app[SETTINGS] = settings
    app[SESSION_CACHE] = SessionCache(settings.session_cache_seconds)  # per process: web/auth.py
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader([TEMPLATES / "pages", TEMPLATES]), autoescape=True)
    app.cleanup_ctx.extend([db_ctx, redis_ctx, storage_ctx, cache_ctx, sampler_ctx])
    ratelimit.setup(app)
    live.setup(app)  # after redis_ctx: the doorbell's subscription ends first
    # Security headers on every response; before the routes, which may add
    # trusted inline HTML (Swagger UI) to the policy.
    security_headers.setup(app, [TEMPLATES / "pages", TEMPLATES / "reports", TEMPLATES / "errors"])
    routes.setup_routes(app)
    return app
