"""Accounts and sessions: register, login, refresh rotation, logout, verification, password reset.

Used by the JSON API and (later) the HTML views alike. Connections are held only around SQL,
never across bcrypt (which runs in a thread) or Redis.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared import audit, jobs
from shared.config import Settings
from shared.db.database import Database
from shared.errors import Conflict, Forbidden, ServiceUnavailable, Unauthorized, field_error
from shared.mail import outbox
from shared.observability.logs import request_id_var
from shared.security import create_access_token, hash_password, needs_rehash, new_token, token_digest, verify_password

logger = logging.getLogger("app.accounts")

VERIFY_TTL = timedelta(days=2)
RESET_TTL = timedelta(hours=1)
USER_COLUMNS = "u.id, u.email, u.name, u.role, u.is_active, u.email_verified, u.email_notifications, u.created_at"

INSERT_USER = f"""
INSERT INTO users AS u (email, name, password_hash, role, email_verified)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (email) DO NOTHING
RETURNING {USER_COLUMNS}
"""
SELECT_USER = f"SELECT {USER_COLUMNS} FROM users AS u WHERE u.id = $1"
SELECT_LOGIN = f"SELECT {USER_COLUMNS}, u.password_hash FROM users AS u WHERE u.email = $1"
SELECT_SESSION_USER = f"""
SELECT {USER_COLUMNS}
FROM sessions AS s JOIN users AS u ON u.id = s.user_id
WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND u.is_active
"""
INSERT_SESSION = "INSERT INTO sessions (user_id) VALUES ($1) RETURNING id"
INSERT_REFRESH = "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, now() + $3)"
SELECT_REFRESH_FOR_UPDATE = """
SELECT r.session_id, r.used_at, r.expires_at < now() AS expired, s.revoked_at, s.user_id, u.is_active
FROM refresh_tokens AS r
JOIN sessions AS s ON s.id = r.session_id
JOIN users AS u ON u.id = s.user_id
WHERE r.token_hash = $1
FOR UPDATE OF r
"""
SPEND_REFRESH = "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1"
REVOKE_SESSION = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE id = $1 AND revoked_at IS NULL
"""
REVOKE_USER_SESSIONS = """
UPDATE sessions SET revoked_at = now(), revoked_reason = $2
WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $3
"""
SELECT_SESSION_OWNER = "SELECT s.id FROM refresh_tokens AS r JOIN sessions AS s ON s.id = r.session_id " \
                       "WHERE r.token_hash = $1 AND s.user_id = $2"
INSERT_ONE_TIME = """
INSERT INTO one_time_tokens (token_hash, user_id, purpose, expires_at) VALUES ($1, $2, $3, now() + $4)
"""
SPEND_UNUSED_ONE_TIME = """
UPDATE one_time_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
"""
CONSUME_ONE_TIME = """
UPDATE one_time_tokens AS t SET used_at = now()
FROM users AS u
WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now()
  AND u.id = t.user_id AND u.is_active
RETURNING t.user_id
"""
MARK_VERIFIED = "UPDATE users SET email_verified = true, updated_at = now() WHERE id = $1"
SET_PASSWORD = """
UPDATE users SET password_hash = $2, email_verified = email_verified OR $3, updated_at = now() WHERE id = $1
"""
# Compare-and-set: a password changed meanwhile (reset, another login's upgrade) is not overwritten.
REHASH_PASSWORD = "UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3"
SELECT_PASSWORD_HASH = "SELECT password_hash FROM users WHERE id = $1"
# bcrypt runs between reading a hash and acting on it, long enough (a full bcrypt queue makes it longer) for
# a reset or a deactivation to commit meanwhile. So whatever acts on a verified password first locks the user
# row inside its writing transaction and compares: the hash it verified must still be the stored one and the
# account still active. FOR SHARE (logins) / FOR UPDATE (changes) orders it against the reset or deactivation:
# whichever commits second sees the other (their session revocation then covers a session inserted here).
LOCK_CREDENTIALS = "SELECT password_hash, is_active FROM users WHERE id = $1 FOR SHARE"
LOCK_CREDENTIALS_FOR_UPDATE = "SELECT password_hash, is_active FROM users WHERE id = $1 FOR UPDATE"
SELECT_LIVE_SESSION = "SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL"
# A reset token that could be consumed now: checked before bcrypt, so a stranger's guess costs no hash.
PEEK_ONE_TIME = """
SELECT 1 FROM one_time_tokens AS t JOIN users AS u ON u.id = t.user_id
WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > now() AND u.is_active
"""
RESET_PASSWORD = """
UPDATE users SET password_hash = $2, email_verified = true, updated_at = now() WHERE id = $1 AND is_active
RETURNING id
"""
UPDATE_NAME = "UPDATE users SET name = $2, updated_at = now() WHERE id = $1"
UPDATE_NOTIFICATIONS = "UPDATE users SET email_notifications = $2, updated_at = now() WHERE id = $1"


# Every web process may remember "this session is live, this is its user" while this Redis value stays the
# same (web/auth.py SessionCache). Each change to a user's sessions or to what the session check returns
# (revocation, deactivation, role, name, verification) sets a new random value *after* its commit, so the
# next request on every process misses and asks the primary again. Random, not INCR: a Redis restart or
# an evicted key reads as "no version", which never matches a remembered one.
AUTH_VERSION_KEY = "auth:v:{}"
AUTH_VERSION_TTL = 24 * 3600  # an idle user's key goes away; a missing version never matches, so that is safe


async def auth_changed(redis: Redis, user_id: int) -> None:
    """Call after committing any change to the user's sessions or session-check columns."""
    for attempt in range(3):
        try:
            await redis.set(AUTH_VERSION_KEY.format(user_id), secrets.token_hex(8), ex=AUTH_VERSION_TTL)
            return
        except RedisError:
            await asyncio.sleep(0.2 * (attempt + 1))
    # Other processes keep their remembered sessions of this user until SESSION_CACHE_SECONDS pass.
    logger.error("could not publish an auth change of user %s; other processes may accept its revoked "
                 "sessions for up to SESSION_CACHE_SECONDS", user_id)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def as_dict(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": "bearer", "expires_in": self.expires_in}


def user_out(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """The public shape of a user: never the password hash."""
    return {"id": row["id"], "email": row["email"], "name": row["name"], "role": row["role"],
            "is_active": row["is_active"], "email_verified": row["email_verified"],
            "email_notifications": row["email_notifications"], "created_at": row["created_at"]}


async def get_user(conn: asyncpg.Connection, *, user_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(SELECT_USER, user_id)
    return user_out(row) if row else None


async def get_session_user(conn: asyncpg.Connection, *, user_id: int, session_id: str) -> dict[str, Any] | None:
    """The user behind a live session, or None when the session was revoked or the user deactivated."""
    row = await conn.fetchrow(SELECT_SESSION_USER, session_id, user_id)
    return user_out(row) if row else None


async def create_user(conn: asyncpg.Connection, *, email: str, password_hash: str, name: str = "",
                      role: str = "user", email_verified: bool = False) -> dict[str, Any]:
    row = await conn.fetchrow(INSERT_USER, email, name, password_hash, role, email_verified)
    if row is None:
        raise Conflict("An account with this email already exists")
    return user_out(row)


async def _queue_token_mail(conn: asyncpg.Connection, settings: Settings, *, user: dict[str, Any],
                            purpose: str, ttl: timedelta, template: str, path: str,
                            dedup_key: str | None = None) -> int | None:
    await conn.execute(SPEND_UNUSED_ONE_TIME, user["id"], purpose)  # only the newest link works
    token, digest = new_token()
    await conn.execute(INSERT_ONE_TIME, digest, user["id"], purpose, ttl)
    context = {"name": user["name"] or user["email"], "token": token,
               "link": f"{settings.public_url}{path}?token={token}", "expires_hours": int(ttl.total_seconds() // 3600)}
    return await outbox.queue_email(conn, to=user["email"], template=template, context=context, user_id=user["id"],
                                    dedup_key=dedup_key, secrets_ttl=ttl)


async def register(db: Database, arq: ArqRedis, settings: Settings, *, email: str, password: str,
                   name: str = "") -> dict[str, Any]:
    """Create the account and queue its verification mail in the same transaction."""
    password_hash = await hash_password(password, settings)
    async with db.write.acquire() as conn, conn.transaction():
        user = await create_user(conn, email=email, password_hash=password_hash, name=name)
        mail_id = await _queue_token_mail(conn, settings, user=user, purpose="verify_email", ttl=VERIFY_TTL,
                                          template="verify_email", path="/verify-email")
    await outbox.dispatch(arq, [mail_id])
    return user


async def _start_session(conn: asyncpg.Connection, settings: Settings, user_id: int,
                         session_id: str | None = None) -> TokenPair:
    if session_id is None:
        session_id = str(await conn.fetchval(INSERT_SESSION, user_id))
    refresh, digest = new_token()
    await conn.execute(INSERT_REFRESH, digest, session_id, timedelta(seconds=settings.refresh_token_ttl))
    access, _ = create_access_token(settings, user_id=user_id, session_id=session_id)
    return TokenPair(access, refresh, settings.access_token_ttl)


@dataclass(frozen=True)
class Verified:
    """An account whose password was just checked, and the stored hash it was checked against."""

    user_id: int
    password_hash: str


async def still_verified(conn: asyncpg.Connection, verified: Verified) -> None:
    """Inside the transaction acting on ``verified``: 401/403 unless its hash is still current and the account
    active (the row stays locked until that transaction ends; see LOCK_CREDENTIALS)."""
    row = await conn.fetchrow(LOCK_CREDENTIALS, verified.user_id)
    if row is None or row["password_hash"] != verified.password_hash:
        raise Unauthorized("Invalid email or password", error="invalid_grant")
    if not row["is_active"]:
        raise Forbidden("This account has been deactivated")


async def check_credentials(db: Database, settings: Settings, *, email: str, password: str) -> Verified:
    """The active account with this email and password (used by the API and the HTML login).

    Same 401, and the same bcrypt cost, whether the email or the password is wrong. The caller acts on it
    in a transaction that starts with ``still_verified``.
    """
    async with db.write.acquire() as conn:
        row = await conn.fetchrow(SELECT_LOGIN, email)
    if not await verify_password(password, row["password_hash"] if row else None, settings):
        await _login_failed(db, email, row, "wrong email or password")
        raise Unauthorized("Invalid email or password", error="invalid_grant")
    assert row is not None
    if not row["is_active"]:
        await _login_failed(db, email, row, "deactivated")
        raise Forbidden("This account has been deactivated")
    # The one moment the plain password is at hand: upgrade a legacy format or an outdated cost.
    verified = Verified(int(row["id"]), row["password_hash"])
    if needs_rehash(row["password_hash"], settings):
        new_hash = await hash_password(password, settings)
        async with db.write.acquire() as conn:
            status = await conn.execute(REHASH_PASSWORD, row["id"], new_hash, row["password_hash"])
        if status == "UPDATE 1":
            verified = Verified(verified.user_id, new_hash)
    return verified


async def _login_failed(db: Database, email: str, row: asyncpg.Record | None, reason: str) -> None:
    """Audit a refused login. Its own short write (the request then fails): it runs after the login rate
    limits let the attempt through (web.ratelimit, before the handler), so a flood is refused before it
    can write here."""
    async with db.write.acquire() as conn:
        await audit.record(conn, "auth.login_failed", actor_id=None, subject_type="user" if row else None,
                           subject_id=row["id"] if row else None, detail={"email": email[:254], "reason": reason})


async def login(db: Database, settings: Settings, *, email: str, password: str) -> TokenPair:
    verified = await check_credentials(db, settings, email=email, password=password)
    async with db.write.acquire() as conn, conn.transaction():
        await still_verified(conn, verified)
        await audit.record(conn, "auth.login", actor_id=verified.user_id, subject_type="user",
                           subject_id=verified.user_id)
        return await _start_session(conn, settings, verified.user_id)


async def open_browser_session(db: Database, settings: Settings, *, email: str, password: str) -> tuple[int, str]:
    """Log in for the HTML pages: (user id, session id) of a new session row, the one the cookie names.

    No refresh token: the cookie is re-checked against this row on every request instead.
    """
    verified = await check_credentials(db, settings, email=email, password=password)
    async with db.write.acquire() as conn, conn.transaction():
        await still_verified(conn, verified)
        await audit.record(conn, "auth.login", actor_id=verified.user_id, subject_type="user",
                           subject_id=verified.user_id, detail={"via": "browser"})
        return verified.user_id, str(await conn.fetchval(INSERT_SESSION, verified.user_id))


async def refresh(db: Database, redis: Redis, settings: Settings, *, refresh_token: str) -> TokenPair:
    """Rotate: spend the refresh token, issue a new pair. A spent token coming back revokes the login."""
    invalid = Unauthorized("The refresh token is invalid or expired", error="invalid_grant")
    async with db.write.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(SELECT_REFRESH_FOR_UPDATE, token_digest(refresh_token))
            if row is None or row["revoked_at"] is not None or not row["is_active"] or row["expired"]:
                raise invalid
            if row["used_at"] is None:
                await conn.execute(SPEND_REFRESH, token_digest(refresh_token))
                return await _start_session(conn, settings, row["user_id"], str(row["session_id"]))
            await conn.execute(REVOKE_SESSION, row["session_id"], "refresh_token_reuse")
            await audit.record(conn, "auth.refresh_reuse", actor_id=None, subject_type="user",
                               subject_id=row["user_id"], detail={"session_id": str(row["session_id"])})
        # Committed above: the revocation must stick even though this request fails.
        logger.warning("spent refresh token reused; session %s revoked", row["session_id"])
    await auth_changed(redis, row["user_id"])
    raise invalid


async def logout(db: Database, redis: Redis, *, user_id: int, session_id: str, refresh_token: str | None) -> None:
    """End the caller's session, and the session of ``refresh_token`` if it is the caller's too."""
    async with db.write.acquire() as conn, conn.transaction():
        await conn.execute(REVOKE_SESSION, session_id, "logout")
        await audit.record(conn, "auth.logout", actor_id=user_id, subject_type="user", subject_id=user_id)
        if refresh_token:
            other = await conn.fetchval(SELECT_SESSION_OWNER, token_digest(refresh_token), user_id)
            if other is not None:
                await conn.execute(REVOKE_SESSION, other, "logout")
    await auth_changed(redis, user_id)


async def _consume(conn: asyncpg.Connection, token: str, purpose: str) -> int:
    user_id = await conn.fetchval(CONSUME_ONE_TIME, token_digest(token), purpose)
    if user_id is None:  # like any token that is not live: 401 (API.md), whatever the string looks like
        raise Unauthorized("The token is invalid, used or expired")
    return int(user_id)


async def verify_email(db: Database, redis: Redis, *, token: str) -> None:
    async with db.write.acquire() as conn, conn.transaction():
        user_id = await _consume(conn, token, "verify_email")
        await conn.execute(MARK_VERIFIED, user_id)
    await auth_changed(redis, user_id)


async def request_password_reset(db: Database, arq: ArqRedis, settings: Settings, *, email: str) -> None:
    """Enqueue the reset; the worker looks the address up (``queue_password_reset``). Callers answer 202.

    The request does the same work whatever the email: no lookup, one job, so neither the answer nor
    its timing tells whether an account exists. (``db`` and ``settings`` are unused; the signature
    stays the one every caller, API and HTML form, already uses.)
    """
    request_id = request_id_var.get()
    try:
        await arq.enqueue_job(jobs.PASSWORD_RESET, jobs.Private(email), None if request_id == "-" else request_id)
    except (RedisError, OSError) as exc:  # Redis down: the same 503 for every address
        logger.warning("could not enqueue a password reset: %s", type(exc).__name__)
        raise ServiceUnavailable("Password reset is unavailable for a moment; try again") from None


class _AlreadyQueued(Exception):
    """This job already queued its mail (arq ran it twice): roll back the second token."""


async def queue_password_reset(db: Database, settings: Settings, *, email: str, dedup_key: str) -> int | None:
    """Worker side of a reset request: a token and a mail if an active account has this email.

    :param dedup_key: one per request (the arq job id), so a job run twice queues one mail
    :return: the outbox id, or None (no such active account, or already queued by this request)
    """
    try:
        async with db.write.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(SELECT_LOGIN, email)
            if row is None or not row["is_active"]:
                return None
            mail_id = await _queue_token_mail(conn, settings, user=user_out(row), purpose="password_reset",
                                              ttl=RESET_TTL, template="password_reset", path="/reset-password",
                                              dedup_key=dedup_key)
            if mail_id is None:
                raise _AlreadyQueued
    except _AlreadyQueued:
        return None
    logger.info("password reset mail queued for user %s", row["id"])
    return mail_id


async def confirm_password_reset(db: Database, redis: Redis, settings: Settings, *, token: str,
                                 password: str) -> None:
    """Set the new password and end every session of that user (the link proves the mailbox, too).

    The token is checked before bcrypt (a dead one costs no hash) and consumed after it, in the writing
    transaction: a newer reset or a deactivation committed meanwhile makes this one a 401 that changes nothing.
    """
    async with db.write.acquire() as conn:
        if await conn.fetchval(PEEK_ONE_TIME, token_digest(token), "password_reset") is None:
            raise Unauthorized("The token is invalid, used or expired")
    password_hash = await hash_password(password, settings)
    async with db.write.acquire() as conn, conn.transaction():
        user_id = await _consume(conn, token, "password_reset")
        if await conn.fetchval(RESET_PASSWORD, user_id, password_hash) is None:  # deactivated meanwhile
            raise Unauthorized("The token is invalid, used or expired")
        await conn.execute(REVOKE_USER_SESSIONS, user_id, "password_reset", None)
        await audit.record(conn, "user.password_reset", actor_id=user_id, subject_type="user", subject_id=user_id)
    await auth_changed(redis, user_id)


async def update_me(db: Database, redis: Redis, settings: Settings, *, user_id: int, session_id: str,
                    changes: dict[str, Any]) -> dict[str, Any]:
    """Change name, email_notifications and/or password; a new password needs the current one and ends the
    *other* sessions."""
    new_hash = None
    if "password" in changes:
        if not changes.get("current_password"):
            raise field_error("current_password", "Required to set a new password")
        async with db.write.acquire() as conn:
            current_hash = await conn.fetchval(SELECT_PASSWORD_HASH, user_id)
        if not await verify_password(changes["current_password"], current_hash, settings, signed_in=True):
            raise field_error("current_password", "Incorrect password")
        new_hash = await hash_password(changes["password"], settings, signed_in=True)
    async with db.write.acquire() as conn, conn.transaction():
        if new_hash is not None:  # compare-and-set on what bcrypt verified (see LOCK_CREDENTIALS)
            row = await conn.fetchrow(LOCK_CREDENTIALS_FOR_UPDATE, user_id)
            if row is None or not row["is_active"] or \
                    await conn.fetchval(SELECT_LIVE_SESSION, session_id, user_id) is None:
                raise Unauthorized("The access token has been revoked")
            if row["password_hash"] != current_hash:  # a reset or another change won the race
                raise field_error("current_password", "Incorrect password")
        if "name" in changes:
            await conn.execute(UPDATE_NAME, user_id, changes["name"])
        if "email_notifications" in changes:
            await conn.execute(UPDATE_NOTIFICATIONS, user_id, changes["email_notifications"])
        if new_hash is not None:
            await conn.execute(SET_PASSWORD, user_id, new_hash, False)
            await conn.execute(REVOKE_USER_SESSIONS, user_id, "password_change", session_id)
            await audit.record(conn, "user.password_changed", actor_id=user_id, subject_type="user",
                               subject_id=user_id)
        user = await get_user(conn, user_id=user_id)
    await auth_changed(redis, user_id)
    assert user is not None
    return user


async def revoke_all_sessions(conn: asyncpg.Connection, *, user_id: int, reason: str) -> None:
    """Inside the caller's transaction: the caller calls auth_changed after its commit."""
    await conn.execute(REVOKE_USER_SESSIONS, user_id, reason, None)
