"""The application factory: keys, one cleanup context per resource, middlewares, routes. No I/O at import."""
from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from redis.exceptions import RedisError

from shared import redis_client
from shared.cache import FLUSH_INTERVAL, OwnerCache
from shared.config import Settings
from shared.db import failover
from shared.db.database import Database
from shared.observability import metrics, samplers
from shared.storage import storage_from_settings
from web import live, middlewares, protocol, ratelimit, routes, security_headers
from web.keys import ARQ, CACHE, DB, REDIS, SESSION_CACHE, SETTINGS, STORAGE
from web.request import MAX_BODY
from web.session_cache import SessionCache

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    app[DB] = await Database.connect(app[SETTINGS])
    yield
    await app[DB].close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    # One client for cache, denylist, rate limits and the arq queue: ArqRedis *is* a redis client. Plain or
    # through Sentinel, with short timeouts: a Redis outage must cost speed, not hang requests.
    client = redis_client.client(app[SETTINGS])
    app[REDIS] = client
    app[ARQ] = client
    yield
    await client.aclose()


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


# --- failover (docs/ha.md) --------------------------------------------------------------------------
WATCH_INTERVAL = 1.0


async def failover_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Each second: is the primary there (metrics), and is Redis the one we saw last?

    A Redis that is another master (failover: a replica may lack the newest auth versions) or was emptied
    must not vouch for sessions this process remembered under it, so they are forgotten: the next request
    of each asks the primary. Revocations themselves are rows in PostgreSQL and never depend on Redis.
    """
    identity, primary = redis_client.RedisIdentity(), failover.PrimaryWatch(app[DB].write)
    # A client of its own: the watch must not take connections (or round trips) from requests.
    redis = redis_client.client(app[SETTINGS], max_connections=2)

    async def step() -> None:
        await primary.check()
        try:
            if await identity.changed(redis):
                app[SESSION_CACHE].forget_sessions()
        except (RedisError, OSError):
            app[SESSION_CACHE].forget_sessions()  # cannot tell: trust nothing remembered

    watch = samplers.Periodic(WATCH_INTERVAL, step).start()
    yield
    await watch.stop()
    await redis.aclose()


async def sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    sampler = samplers.start(app[DB], app[REDIS])
    yield
    await sampler.stop()
    metrics.process_exited(os.getpid())


# The order is written down, with reasons, in docs/architecture.md ("The request walk").
MIDDLEWARES = [
    middlewares.request_id_middleware,   # first: everything after it logs and answers with the id
    middlewares.metrics_middleware,      # sees every response, 429s and 500s included
    middlewares.undecodable_headers_middleware,  # before anything reads a header or cookie
    middlewares.write_position_middleware,  # after a user's write, remember its WAL position
    middlewares.compression_middleware,  # compresses whatever the inner ones produced, error bodies too
    middlewares.error_middleware,        # the one error mapping: inner raises become problem+json
    live.doorbell_middleware,            # inside it: only a write that did not raise rings the live streams
    security_headers.hostile_input_middleware,  # overlong path segments, broken forms -> 4xx
    ratelimit.ratelimit_middleware,      # raises RateLimited, mapped just outside; before any handler work
    middlewares.failover_middleware,     # innermost: a request that lost the primary is re-run once, or 503
]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=list(MIDDLEWARES), handler_args=protocol.HANDLER_ARGS)
    protocol.install(app)  # requests the HTTP parser refuses are answered as problem+json too
    app[SETTINGS] = settings
    app[SESSION_CACHE] = SessionCache(settings.session_cache_seconds)  # per process: web/auth.py
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader([TEMPLATES / "pages", TEMPLATES]), autoescape=True)
    app.cleanup_ctx.extend([db_ctx, redis_ctx, storage_ctx, cache_ctx, sampler_ctx, failover_watch_ctx])
    ratelimit.setup(app)
    live.setup(app)  # after redis_ctx: the doorbell's subscription ends first
    # Security headers on every response; before the routes, which may add
    # trusted inline HTML (Swagger UI) to the policy.
    security_headers.setup(app, [TEMPLATES / "pages", TEMPLATES / "reports", TEMPLATES / "errors"])
    routes.setup_routes(app)
    return app
