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
from shared.storage import storage_from_settings
from web import middlewares, routes
from web.keys import ARQ, DB, REDIS, SETTINGS, STORAGE
from web.request import MAX_BODY

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
    # StorageError (shared/cli.py prints it), rather than failing every download later.
    storage = storage_from_settings(app[SETTINGS])
    try:
        await storage.check()
    except BaseException:
        await storage.close()
        raise
    app[STORAGE] = storage
    yield
    await storage.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[middlewares.request_id_middleware, middlewares.metrics_middleware,
                     middlewares.error_middleware],
    )
    app[SETTINGS] = settings
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader([TEMPLATES / "pages", TEMPLATES]), autoescape=True)
    app.cleanup_ctx.extend([db_ctx, redis_ctx, storage_ctx])
    routes.setup_routes(app)
    return app
