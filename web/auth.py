"""Who is calling: the one place a request becomes an authenticated user (or a 401/403).

Per request: the JWT (verified once per token string, then remembered until it expires), one Redis
round trip (MGET of the token's denylist entry and the user's auth version), and, only when this
process has not seen this session under that auth version, the session check on the primary. Every
change to a user's sessions sets a new auth version after its commit (``accounts.auth_changed``), so a
revocation on any process is seen by the very next request on every process. Without Redis the
session check runs on every request, as before.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from shared import accounts
from shared.errors import Forbidden, Unauthorized
from shared.security import AccessClaims
from web import session
from web.keys import AUTH, DB, REDIS, REDIS_READ, SESSION_CACHE, SETTINGS

logger = logging.getLogger("app.web.auth")
DENYLIST_PREFIX = "denylist:jti:"


@dataclass(frozen=True)
class AuthContext:
    user: dict[str, Any]
    claims: AccessClaims

    @property
    def user_id(self) -> int:
        return int(self.user["id"])

    @property
    def is_admin(self) -> bool:
        return self.user["role"] == "admin"


def _bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing bearer token" if not header else "Expected 'Authorization: Bearer <token>'")
    return token.strip()


def revocation_keys(claims: AccessClaims) -> tuple[str, str]:
    """The Redis keys ``authenticate`` reads: the token's denylist entry and the user's auth version."""
    return DENYLIST_PREFIX + claims.jti, accounts.AUTH_VERSION_KEY.format(claims.user_id)


async def _revocation_state(request: web.Request, claims: AccessClaims) -> tuple[bool, bytes | None]:
    """(denylisted?, the user's auth version) in one round trip; the version is b"" when the user has none
    yet and None when Redis is unavailable.

    The round trip is the rate limiter's when it already read these keys for this token in this request
    (before the handler ran: as fresh as a read of our own). Logged-out tokens sit in the denylist until
    they expire. If Redis is down the session check still holds, and nothing remembered is trusted:
    revocations made meanwhile could not publish a version.
    """
    keys = revocation_keys(claims)
    early = request.get(REDIS_READ)
    if early is not None and keys[0] in early and keys[1] in early:  # the denylist key names this token
        return early[keys[0]] is not None, early[keys[1]] or b""
    try:
        denied, version = await request.app[REDIS].mget(*keys)
    except RedisError:
        logger.warning("token denylist unavailable; relying on the session check", exc_info=True)
        request.app[SESSION_CACHE].forget_sessions()
        return False, None
    return denied is not None, version or b""


async def deny(request: web.Request, claims: AccessClaims) -> None:
    ttl = max(1, claims.expires_at - int(time.time()))
    try:
        await request.app[REDIS].set(DENYLIST_PREFIX + claims.jti, b"1", ex=ttl)
    except RedisError:
        logger.warning("could not add token to denylist; its session is revoked anyway", exc_info=True)


async def _live_session_user(request: web.Request, claims: AccessClaims, version: bytes | None) -> dict[str, Any]:
    cache = request.app[SESSION_CACHE]
    user = cache.user(claims, version) if version else None
    if user is not None:
        return user
    async with request.app[DB].write.acquire() as conn:
        user = await accounts.get_session_user(conn, user_id=claims.user_id, session_id=claims.session_id)
    if user is None:
        raise Unauthorized("The access token has been revoked")
    if version:
        cache.remember(claims, version, user)
    elif version == b"":
        await _start_versioning(request, claims.user_id)
    return user


async def _start_versioning(request: web.Request, user_id: int) -> None:
    """The user has no auth version (first use, or Redis restarted or evicted it): create one, so that the
    next request can remember the session. Random, so no value from before a restart comes back; NX, so a
    version a concurrent revocation just set is never overwritten. Nothing is remembered this time: the
    version did not exist when the primary was asked."""
    try:
        await request.app[REDIS].set(accounts.AUTH_VERSION_KEY.format(user_id), secrets.token_hex(8), nx=True,
                                     ex=accounts.AUTH_VERSION_TTL)
    except RedisError:
        logger.warning("could not create an auth version for user %s", user_id, exc_info=True)


async def authenticate(request: web.Request) -> AuthContext:
    """The caller, checked against the denylist and (on the primary, unless remembered) the live session."""
    cached = request.get(AUTH)
    if isinstance(cached, AuthContext):
        return cached
    claims = await _claims(request)
    denied, version = await _revocation_state(request, claims)
    if denied:
        raise Unauthorized("The access token has been revoked")
    context = AuthContext(user=await _live_session_user(request, claims, version), claims=claims)
    request[AUTH] = context
    return context


async def _claims(request: web.Request) -> AccessClaims:
    """A bearer token wins; without one, the browser session cookie (and, if unsafe, its CSRF token)."""
    settings = request.app[SETTINGS]
    cookie = request.cookies.get(session.SESSION_COOKIE)
    if cookie and "Authorization" not in request.headers:
        claims = session.decode_session(settings, cookie)
        await session.check_csrf(request, settings, claims.session_id)
        return claims
    return request.app[SESSION_CACHE].claims(settings, _bearer_token(request))


async def current_user(request: web.Request) -> AuthContext | None:
    """For HTML pages that look different signed in: the caller, or None instead of a 401."""
    try:
        return await authenticate(request)
    except Unauthorized:
        return None


async def require_admin(request: web.Request) -> AuthContext:
    context = await authenticate(request)
    if not context.is_admin:
        raise Forbidden("This action needs the admin role")
    return context


async def recheck(request: web.Request) -> None:
    """For a long-lived response (the event stream): raise Unauthorized once the request's token has expired,
    been logged out, or its session revoked since ``authenticate`` let it in.

    Reads Redis afresh (the rate limiter's early read is as old as the request); the remembered session is
    keyed by the user's auth version, which every revocation changes, so a revoked session misses it and
    goes to the primary, which no longer has it.
    """
    context = request[AUTH]
    assert isinstance(context, AuthContext)
    claims = context.claims
    if claims.expires_at <= time.time():
        raise Unauthorized("The access token has expired")
    try:
        denied, version = await request.app[REDIS].mget(*revocation_keys(claims))
        version = version or b""
    except RedisError:
        denied, version = None, None  # nothing remembered is trusted: the session check on the primary holds
    if denied is not None:
        raise Unauthorized("The access token has been revoked")
    await _live_session_user(request, claims, version)
