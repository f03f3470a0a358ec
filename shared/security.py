"""Passwords (bcrypt, off the event loop), JWT access tokens, opaque hashed tokens."""
from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, TypeVar

import bcrypt
import jwt

from shared.config import Settings
from shared.errors import Unauthorized

JWT_ALGORITHM = "HS256"
PASSWORD_MIN, PASSWORD_MAX = 8, 128
BCRYPT_MAX_BYTES = 72  # bcrypt 5 raises ValueError beyond this; validation refuses it first
# bcrypt costs ~0.25 s of CPU at cost 12 and releases the GIL, so every thread running it takes a core.
# asyncio's default executor would run up to cpu+4 of them: a burst of logins would take every core
# from the event loop and PostgreSQL. A bounded pool makes logins queue instead; its threads also run
# at a lower scheduling priority, so requests already being served keep the CPU first.
BCRYPT_THREADS = max(1, (os.cpu_count() or 2) // 2)
BCRYPT_NICE = 5  # mild: under a saturated CPU logins still progress, just behind requests in flight
T = TypeVar("T")


def _lower_priority() -> None:
    try:  # Linux: a thread is a task with its own nice value; raising it needs no privilege
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICE)
    except (AttributeError, OSError):
        pass


_bcrypt_pool = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt", initializer=_lower_priority)


async def _in_bcrypt_pool(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_bcrypt_pool, function, *args)


async def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds)
    hashed = await _in_bcrypt_pool(bcrypt.hashpw, password.encode(), salt)
    return hashed.decode()


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds))


async def verify_password(password: str, password_hash: str | None, rounds: int) -> bool:
    """Check ``password``; with no hash (unknown user) check a dummy so timing reveals nothing."""
    secret = password.encode()
    if len(secret) > BCRYPT_MAX_BYTES:  # can never match a stored hash; spend the time anyway
        secret, password_hash = secret[:BCRYPT_MAX_BYTES], None
    target = password_hash.encode() if password_hash else await _in_bcrypt_pool(_dummy_hash, rounds)
    ok = await _in_bcrypt_pool(bcrypt.checkpw, secret, target)
    return ok and password_hash is not None


def new_token() -> tuple[str, bytes]:
    """A random URL-safe token and the SHA-256 digest that is all the database keeps."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: str
    jti: str
    expires_at: int


def create_access_token(settings: Settings, *, user_id: int, session_id: str) -> tuple[str, AccessClaims]:
    now = int(time.time())
    claims = AccessClaims(user_id=user_id, session_id=session_id, jti=uuid.uuid4().hex,
                          expires_at=now + settings.access_token_ttl)
    payload = {"sub": str(user_id), "sid": session_id, "jti": claims.jti, "iat": now,
               "exp": claims.expires_at, "typ": "access"}
    return jwt.encode(payload, settings.secret_key, algorithm=JWT_ALGORITHM), claims


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(token, settings.secret_key, algorithms=[JWT_ALGORITHM],
                             options={"require": ["sub", "sid", "jti", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The access token is invalid") from None
    if payload.get("typ") != "access" or not str(payload["sub"]).isdigit() or not _is_uuid(payload["sid"]):
        raise Unauthorized("The access token is invalid")
    return AccessClaims(user_id=int(payload["sub"]), session_id=str(payload["sid"]), jti=str(payload["jti"]),
                        expires_at=int(payload["exp"]))


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
