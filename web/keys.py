"""Every application and request key, declared once (typed: string keys fail under filterwarnings=error)."""
from __future__ import annotations

from aiohttp import web
from arq.connections import ArqRedis
from redis.asyncio import Redis

from shared.cache import OwnerCache
from shared.config import Settings
from shared.db.database import Database
from shared.storage import Storage
from web.session_cache import SessionCache

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", Redis)
ARQ = web.AppKey("arq", ArqRedis)
CACHE = web.AppKey("cache", OwnerCache)  # the task list first page and task stats
STORAGE = web.AppKey("storage", Storage)

SESSION_CACHE = web.AppKey("session_cache", SessionCache)

REQUEST_ID = web.RequestKey("request_id", str)
AUTH = web.RequestKey("auth", object)  # the request's AuthContext once authenticated
# Values the rate limiter's one Redis round trip read for this request's later steps, by key (web/ratelimit.py).
REDIS_READ = web.RequestKey("redis_read", dict)
