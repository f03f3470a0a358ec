"""Rate limits in Redis with the `limits` library (moving window), shared by every web process.

Tiers (each configurable, see README):

- ``auth_address``: every route that can reach bcrypt (login, register, password reset confirm, a password
  change; API and HTML forms alike), password reset requests and verify-email, per client address;
- ``auth_email``: register and password-reset requests per target email;
- ``login``: *failed* logins per email: each attempt reserves a place before bcrypt (so a burst of concurrent
  wrong passwords cannot all reach it), and a login that was not a wrong password gives it back;
- ``api``: authenticated ``/api/`` requests per user, whatever the credential: a bearer token or the browser's
  session cookie with a valid signature names the user;
- ``jobs``: ``POST /api/v1/exports`` and ``POST /api/v1/reports`` per user;
- ``invites``: project invitations, per project and per inviter (each its own window).

Other code (the HTML views) calls ``hit(request, tier, key)`` or ``check(request, tier, key)``: both raise
the 429 (RateLimited, with Retry-After) and record the tightest limit seen, which ``add_headers`` writes as
``RateLimit-Limit/-Remaining/-Reset`` on whatever response the request ends with, errors included.

Redis down: the check is skipped (fail open), counted in ``taskdeck_ratelimit_errors_total`` and logged at
most once a minute per process. Nothing here ever makes a request fail for lack of Redis.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import limits
from aiohttp import web
from aiohttp.typedefs import Handler
from limits.aio.strategies import MovingWindowRateLimiter
from limits.util import WindowStats
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from shared import redis_client
from shared.config import Settings
from shared.errors import RateLimited, Unauthorized
from shared.observability import metrics
from shared.security import AccessClaims
from web import auth, session
from web.keys import REDIS, REDIS_READ, SESSION_CACHE, SETTINGS

logger = logging.getLogger("app.web.ratelimit")
STORAGE_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
ERROR_LOG_INTERVAL = 60.0
KEY_PREFIX = "taskdeck:rl"
# Routes limited per client address before the handler runs: the JSON API's (web/api/auth.py) and their
# HTML form twins (web/pages/auth.py, web/pages/account.py). A password change is limited by its handler
# (``password_attempt``), since the same route also changes a name.
AUTH_ADDRESS_ROUTES = frozenset({"auth-login", "auth-register", "auth-password-reset",
                                 "auth-password-reset-confirm", "auth-verify-email",
                                 "page-login-submit", "page-register-submit", "page-reset-password-submit",
                                 "page-verify-email-submit", "page-forgot-password-submit"})
JOB_ROUTES = frozenset({"exports-create", "reports-create"})
# Route name -> the Redis keys its handler will read that the token alone can name (e.g. the caller's
# cached first page): read in the limiter's round trip too, so that the handler needs none of its own.
EARLY_READS: dict[str, Callable[[web.Request, AccessClaims], tuple[str, ...]]] = {}


@dataclass(frozen=True)
class Usage:
    """One limit's state after a check, as the response headers show it."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds when a slot frees up
    tier: str = ""

    def tighter_than(self, other: "Usage | None") -> bool:
        return other is None or (self.remaining, self.limit) < (other.remaining, other.limit)

    def seconds_to_reset(self) -> int:
        return max(0, math.ceil(self.reset_at - time.time()))


USAGE = web.RequestKey("ratelimit_usage", Usage)


class Limiter:
    """The tiers and their Redis storage for one app (it borrows the app's Redis connection pool)."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        storage = redis_client.limits_storage(settings, key_prefix=KEY_PREFIX, pool=redis.connection_pool)
        self.redis, self.storage = redis, storage
        self.strategy = MovingWindowRateLimiter(storage)
        self.tiers = {
            "login": limits.parse(settings.rate_limit_login),
            "auth_address": limits.parse(settings.rate_limit_auth_address),
            "auth_email": limits.parse(settings.rate_limit_auth_email),
            "api": limits.parse(settings.rate_limit_api),
            "jobs": limits.parse(settings.rate_limit_jobs),
            "invites": limits.parse(settings.rate_limit_invites),
        }
        self.trusted = [ipaddress.ip_network(cidr) for cidr in settings.trusted_proxies]
        self._last_error_log = -math.inf

    def storage_failed(self) -> None:
        metrics.RATELIMIT_ERRORS.inc()
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            logger.warning("rate limits unavailable (Redis error): letting requests through", exc_info=True)

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)


LIMITER = web.AppKey("limiter", Limiter)


def client_address(request: web.Request) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted X-Forwarded-For hop.

    Walking from the right means a client cannot choose its own address by sending a forged header:
    the hops a trusted proxy appended are the only ones believed.
    """
    peer = request.transport.get_extra_info("peername") if request.transport else None
    address = str(peer[0]) if peer else (request.remote or "unknown")
    limiter = request.app.get(LIMITER)
    if limiter is None or not limiter.trusted or not limiter.is_trusted(address):
        return address
    for hop in reversed([h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]):
        if not hop:
            continue
        if not limiter.is_trusted(hop):
            return hop
        address = hop
    return address


def _identifier(key: str) -> str:
    # Emails and addresses never appear in Redis key names in clear.
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def _stats(limiter: Limiter, tier: str, key: str, *, count: bool) -> tuple[bool, WindowStats] | None:
    item = limiter.tiers[tier]
    try:
        allowed = await limiter.strategy.hit(item, tier, _identifier(key)) if count else True
        stats = await limiter.strategy.get_window_stats(item, tier, _identifier(key))
    except STORAGE_ERRORS:
        limiter.storage_failed()
        return None
    return allowed, stats


def _record(request: web.Request, tier: str, stats: WindowStats) -> Usage:
    limiter = request.app[LIMITER]
    usage = Usage(limiter.tiers[tier].amount, max(0, stats.remaining), stats.reset_time, tier)
    if usage.tighter_than(request.get(USAGE)):
        request[USAGE] = usage
    return usage


def _reject(tier: str, usage: Usage) -> RateLimited:
    metrics.RATELIMIT_REJECTIONS.labels(tier).inc()
    retry_after = max(1, usage.seconds_to_reset())
    return RateLimited(f"Too many requests ({tier.replace('_', ' ')} limit of {usage.limit}); "
                       f"retry in {retry_after} s", headers={"Retry-After": str(retry_after)})


async def hit(request: web.Request, tier: str, key: str, *, reject: bool = True) -> None:
    """Count one request of ``key`` against ``tier``; RateLimited (429) once it is used up.

    :param reject: False counts without refusing (a failed login is counted after its 401 is decided).
    """
    limiter = request.app.get(LIMITER)
    if limiter is None:  # RATE_LIMITS=off
        return
    result = await _stats(limiter, tier, key, count=True)
    if result is None:
        return
    allowed, stats = result
    usage = _record(request, tier, stats)
    if reject and not allowed:
        raise _reject(tier, usage)


async def give_back(request: web.Request, tier: str, key: str) -> None:
    """Undo this request's ``hit`` of ``tier`` for ``key`` (a reserved login attempt that was not a failure).

    The moving window is a Redis list of timestamps, newest first (the ``limits`` library's LPUSH): dropping
    the newest entry frees one place whichever concurrent request's entry it was.
    """
    limiter = request.app.get(LIMITER)
    if limiter is None:
        return
    item = limiter.tiers[tier]
    bridge = limiter.storage.bridge
    try:
        await limiter.redis.lpop(bridge.prefixed_key(item.key_for(tier, _identifier(key))))
    except STORAGE_ERRORS:
        limiter.storage_failed()
        return
    usage = request.get(USAGE)
    if usage is not None and usage.tier == tier:
        request[USAGE] = Usage(usage.limit, min(usage.limit, usage.remaining + 1), usage.reset_at, tier)


@contextlib.asynccontextmanager
async def login_attempt(request: web.Request, email: str) -> AsyncIterator[None]:
    """Around a password check for ``email``: reserve a place in the ``login`` tier first (429 when none is
    left, before any bcrypt), and give it back unless the check ends in a wrong password (Unauthorized)."""
    await hit(request, "login", email)
    failed = False
    try:
        yield
    except Unauthorized:
        failed = True
        raise
    finally:
        if not failed:
            await give_back(request, "login", email)


async def password_attempt(request: web.Request) -> None:
    """A signed-in password change is about to reach bcrypt: count it in the per-address tier."""
    await hit(request, "auth_address", client_address(request))


async def check(request: web.Request, tier: str, key: str) -> None:
    """Refuse (429) when ``tier`` is used up for ``key``, without counting this request."""
    limiter = request.app.get(LIMITER)
    if limiter is None:
        return
    result = await _stats(limiter, tier, key, count=False)
    if result is None:
        return
    usage = _record(request, tier, result[1])
    if usage.remaining <= 0:
        raise _reject(tier, usage)


async def _api_hit_and_auth_reads(request: web.Request, limiter: Limiter, claims: AccessClaims) -> None:
    """The per-user ``api`` tier, the auth check's Redis reads and the route's EARLY_READS in ONE pipeline.

    The strategy stays the ``limits`` library's moving window: its own two Lua scripts (the hit, then the
    window stats that ``strategy.hit`` + ``strategy.get_window_stats`` would send one after the other) run
    with the same keys and arguments, only batched with the denylist / auth-version MGET that
    ``web.auth.authenticate`` would otherwise send itself. A script Redis does not know yet (first use,
    restart, SCRIPT FLUSH) is answered NOSCRIPT without running; that command is then redone through the
    library, which loads it.
    """
    item = limiter.tiers["api"]
    identifier = _identifier(str(claims.user_id))
    bridge = limiter.storage.bridge
    key = bridge.prefixed_key(item.key_for("api", identifier))
    expiry, now = item.get_expiry(), time.time()
    pipe = limiter.redis.pipeline(transaction=False)
    pipe.evalsha(bridge.lua_acquire_moving_window.sha, 1, key, now, item.amount, expiry, 1)
    pipe.evalsha(bridge.lua_moving_window.sha, 1, key, now - expiry, item.amount)
    early = EARLY_READS.get(request.match_info.route.name)
    keys = [*auth.revocation_keys(claims), *(early(request, claims) if early else ())]
    pipe.mget(*keys)
    try:
        acquired, window, values = await pipe.execute(raise_on_error=False)
        if isinstance(acquired, NoScriptError):
            acquired = await limiter.strategy.hit(item, "api", identifier)
        if isinstance(window, NoScriptError):
            stats = await limiter.strategy.get_window_stats(item, "api", identifier)
        elif isinstance(window, Exception):
            raise window
        else:  # what MovingWindowRateLimiter.get_window_stats makes of the script's answer
            start, count = (float(window[0]), int(window[1])) if window else (now, 0)
            stats = WindowStats(start + expiry, item.amount - count)
        if isinstance(acquired, Exception):
            raise acquired
    except STORAGE_ERRORS:
        limiter.storage_failed()
        return  # fail open; authenticate() reads the denylist itself (and handles Redis being down)
    if not isinstance(values, Exception):  # else each reader reads (and handles the error) itself
        request[REDIS_READ] = dict(zip(keys, values))
    usage = _record(request, "api", stats)
    if not acquired:
        raise _reject("api", usage)


def _caller_claims(request: web.Request) -> AccessClaims | None:
    """Who the credential names, the way ``web.auth`` will read it: a validly signed bearer token, else the
    browser's session cookie (revocation and CSRF are the auth check's business: a request refused there
    was still a request of that user).

    A bearer token goes through the session cache's token memory, so its signature is verified once per
    token string for the limiter and the auth check together.
    """
    settings = request.app[SETTINGS]
    try:
        if "Authorization" not in request.headers:
            cookie = request.cookies.get(session.SESSION_COOKIE)
            return session.decode_session(settings, cookie) if cookie else None
        scheme, _, token = request.headers["Authorization"].partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return request.app[SESSION_CACHE].claims(settings, token.strip())
    except Unauthorized:  # the handler answers 401 itself
        return None


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The route-level tiers, before the handler runs (so a flood costs no database work)."""
    limiter = request.app.get(LIMITER)
    if limiter is not None:
        name = request.match_info.route.name
        if name in AUTH_ADDRESS_ROUTES:
            await hit(request, "auth_address", client_address(request))
        elif request.path.startswith("/api/") and (claims := _caller_claims(request)) is not None:
            await _api_hit_and_auth_reads(request, limiter, claims)
            if name in JOB_ROUTES:
                await hit(request, "jobs", str(claims.user_id))
    return await handler(request)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the RateLimit-* headers of the tightest limit this request met."""
    usage = request.get(USAGE)
    if usage is not None:
        response.headers["RateLimit-Limit"] = str(usage.limit)
        response.headers["RateLimit-Remaining"] = str(usage.remaining)
        response.headers["RateLimit-Reset"] = str(usage.seconds_to_reset())


def setup(app: web.Application) -> None:
    """Install the limiter (unless RATE_LIMITS=off); append after the Redis cleanup context."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if app[SETTINGS].rate_limits:
            app[LIMITER] = Limiter(app[SETTINGS], app[REDIS])
        yield

    app.cleanup_ctx.append(ctx)
    app.on_response_prepare.append(add_headers)
