"""Passwords (HMAC pre-hash + bcrypt, off the event loop), JWT access tokens, opaque hashed tokens."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
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
from shared.errors import ServiceUnavailable, Unauthorized

JWT_ALGORITHM = "HS256"
PASSWORD_MIN, PASSWORD_MAX = 8, 128
BCRYPT_MAX_BYTES = 72  # bcrypt 5 raises ValueError beyond this: why passwords are pre-hashed
# Stored hash formats. Legacy rows are plain bcrypt over the UTF-8 password ("$2b$..."); current ones are
# "td2$" + bcrypt over base64(HMAC-SHA-256(pepper, password)): 44 ASCII bytes whatever the password, so
# 128 four-byte characters fit bcrypt's 72 and no NUL reaches it. A legacy hash is upgraded on login.
HASH_PREFIX = "td2$"
_PEPPER_LABEL = b"taskdeck password pre-hash v2"


@lru_cache(maxsize=8)
def _pepper(secret_key: str) -> bytes:
    """A key of its own for passwords, derived from SECRET_KEY (the JWT key is never used directly)."""
    return hmac.new(secret_key.encode(), _PEPPER_LABEL, hashlib.sha256).digest()


def _prehash(password: str, secret_key: str) -> bytes:
    digest = hmac.new(_pepper(secret_key), password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.b64encode(digest)


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
# The pool's queue is bounded: past BCRYPT_QUEUE calls waiting or running in this process, a request gets a
# 503 with Retry-After at once instead of waiting seconds behind a flood (and holding its window open). The
# last BCRYPT_RESERVED places are for signed-in callers (a password change), so anonymous requests (login,
# register, reset), which the per-address limit slows but cannot stop from many addresses, never fill it.
BCRYPT_QUEUE = 8 * BCRYPT_THREADS
BCRYPT_RESERVED = 2 * BCRYPT_THREADS
BCRYPT_RETRY_AFTER = 2


class _BcryptQueue:
    """How many bcrypt calls this process has accepted and not finished (counted until the thread is done,
    not until the awaiting request gives up: a cancelled request's hash still occupies the pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0

    def admit(self, signed_in: bool) -> bool:
        with self._lock:
            if self.in_flight >= BCRYPT_QUEUE - (0 if signed_in else BCRYPT_RESERVED):
                return False
            self.in_flight += 1
            return True

    def done(self, _: object = None) -> None:
        with self._lock:
            self.in_flight -= 1


_bcrypt_queue = _BcryptQueue()


async def _in_bcrypt_pool(function: Callable[..., T], *args: Any, signed_in: bool = False) -> T:
    if not _bcrypt_queue.admit(signed_in):
        raise ServiceUnavailable("Too many password checks in progress; retry shortly",
                                 headers={"Retry-After": str(BCRYPT_RETRY_AFTER)})
    try:
        future = _bcrypt_pool.submit(function, *args)
    except BaseException:
        _bcrypt_queue.done()
        raise
    future.add_done_callback(_bcrypt_queue.done)
    return await asyncio.wrap_future(future)


async def hash_password(password: str, settings: Settings, *, signed_in: bool = False) -> str:
    salt = bcrypt.gensalt(settings.bcrypt_rounds)
    hashed = await _in_bcrypt_pool(bcrypt.hashpw, _prehash(password, settings.secret_key), salt,
                                   signed_in=signed_in)
    return HASH_PREFIX + hashed.decode()


@lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(rounds))


def _candidate(password: str, password_hash: str, secret_key: str) -> tuple[bytes, bytes] | None:
    """What bcrypt compares for this stored format, or None when the password can never match it."""
    if password_hash.startswith(HASH_PREFIX):
        return _prehash(password, secret_key), password_hash[len(HASH_PREFIX):].encode()
    secret = password.encode("utf-8", "surrogatepass")  # legacy: the raw password, at most 72 bytes
    if len(secret) > BCRYPT_MAX_BYTES or not password_hash.startswith("$2"):
        return None
    return secret, password_hash.encode()


async def verify_password(password: str, password_hash: str | None, settings: Settings, *,
                          signed_in: bool = False) -> bool:
    """Check ``password``; with no usable hash (unknown user) check a dummy so timing reveals nothing.

    :param signed_in: the caller is authenticated (may use the places of the queue kept for them)
    """
    candidate = _candidate(password, password_hash, settings.secret_key) if password_hash else None
    if candidate is None:
        dummy = await _in_bcrypt_pool(_dummy_hash, settings.bcrypt_rounds, signed_in=signed_in)
        await _in_bcrypt_pool(bcrypt.checkpw, _prehash(password, settings.secret_key), dummy, signed_in=signed_in)
        return False
    try:
        return await _in_bcrypt_pool(bcrypt.checkpw, *candidate, signed_in=signed_in)
    except ValueError:  # a corrupt stored hash: a failed login, not a 500
        return False


def needs_rehash(password_hash: str, settings: Settings) -> bool:
    """True for a legacy format or a cost other than BCRYPT_ROUNDS: rehash after the next good login."""
    if not password_hash.startswith(HASH_PREFIX):
        return True
    parts = password_hash[len(HASH_PREFIX):].split("$")
    return len(parts) < 4 or parts[2] != f"{settings.bcrypt_rounds:02d}"


def new_token() -> tuple[str, bytes]:
    """A random URL-safe token and the SHA-256 digest that is all the database keeps."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


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


def decode_claims(settings: Settings, token: str, *, typ: str, expired: str, invalid: str) -> AccessClaims:
    """The claims of one of our signed tokens of kind ``typ`` (``access``, or ``browser`` for the session
    cookie); Unauthorized with ``expired`` or ``invalid`` as its detail otherwise."""
    try:
        payload = jwt.decode(token, settings.secret_key, algorithms=[JWT_ALGORITHM],
                             options={"require": ["sub", "sid", "jti", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized(expired) from None
    except jwt.InvalidTokenError:
        raise Unauthorized(invalid) from None
    if payload.get("typ") != typ or not str(payload["sub"]).isdigit() or not _is_uuid(payload["sid"]):
        raise Unauthorized(invalid)
    return AccessClaims(user_id=int(payload["sub"]), session_id=str(uuid.UUID(str(payload["sid"]))),
                        jti=str(payload["jti"]), expires_at=int(payload["exp"]))


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    return decode_claims(settings, token, typ="access", expired="The access token has expired",
                         invalid="The access token is invalid")


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def bearer_matches(authorization: str, expected: str | None) -> bool:
    """True when ``expected`` is set and the Authorization header is ``Bearer <expected>`` (METRICS_TOKEN)."""
    scheme, _, token = authorization.partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    # Bytes, so a non-ASCII header is a mismatch rather than compare_digest's TypeError.
    return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected.encode())
