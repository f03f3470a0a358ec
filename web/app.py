"""The application factory: keys, one cleanup context per resource, middlewares, routes. No I/O at import."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from shared.config import Settings
from shared.db import Database
from web import middlewares, routes
from web.keys import ARQ, DB, REDIS, SESSION_CACHE, SETTINGS
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


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[middlewares.request_id_middleware, middlewares.metrics_middleware,
                     middlewares.error_middleware],
    )
    app[SETTINGS] = settings
    app[SESSION_CACHE] = SessionCache(settings.session_cache_seconds)  # per process: web/auth.py
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader([TEMPLATES / "pages", TEMPLATES]), autoescape=True)
    app.cleanup_ctx.extend([db_ctx, redis_ctx])
    routes.setup_routes(app)
    return app
