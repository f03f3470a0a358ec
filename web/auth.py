"""Who is calling: the one place a request becomes an authenticated user (or a 401/403)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from shared import accounts
from shared.errors import Forbidden, Unauthorized
from shared.security import AccessClaims, decode_access_token
from web import session
from web.keys import AUTH, DB, REDIS, SETTINGS

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


async def is_denied(request: web.Request, jti: str) -> bool:
    """Logged-out tokens sit in Redis until they expire. If Redis is down, the session check still holds."""
    try:
        return bool(await request.app[REDIS].exists(DENYLIST_PREFIX + jti))
    except RedisError:
        logger.warning("token denylist unavailable; relying on the session check", exc_info=True)
        return False


async def deny(request: web.Request, claims: AccessClaims) -> None:
    ttl = max(1, claims.expires_at - int(time.time()))
    try:
        await request.app[REDIS].set(DENYLIST_PREFIX + claims.jti, b"1", ex=ttl)
    except RedisError:
        logger.warning("could not add token to denylist; its session is revoked anyway", exc_info=True)


async def authenticate(request: web.Request) -> AuthContext:
    """The caller, checked against the denylist and (on the primary) the live session and active user."""
    cached = request.get(AUTH)
    if isinstance(cached, AuthContext):
        return cached
    claims = await _claims(request)
    if await is_denied(request, claims.jti):
        raise Unauthorized("The access token has been revoked")
    async with request.app[DB].write.acquire() as conn:
        user = await accounts.get_session_user(conn, user_id=claims.user_id, session_id=claims.session_id)
    if user is None:
        raise Unauthorized("The access token has been revoked")
    context = AuthContext(user=user, claims=claims)
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
    return decode_access_token(settings, _bearer_token(request))


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
