"""Idempotency-Key: the first response to (user, endpoint, key) is replayed for 24 hours.

Used by POST /api/v1/tasks and meant for POST /api/v1/exports: ``run_once`` wraps any action that
does its writes on the given connection and returns the response to remember.

- The action and the stored response commit in one transaction: a crash leaves neither, so a
  retry simply runs again (no half-done request can be replayed or block the key).
- "Still running" is a transaction-scoped advisory lock taken with try-lock: a concurrent second
  request gets 409 at once instead of queueing behind the first, and the lock vanishes with the
  first request's transaction, even if its process is killed.
- PostgreSQL, not Redis: the record must be exactly as durable as the task it describes.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import asyncpg

from shared.errors import Conflict, ValidationFailed

TTL_HOURS = 24
HEADER = "Idempotency-Key"
# Visible ASCII, as Stripe and the IETF draft suggest; the OpenAPI document states this very pattern.
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
CLEANUP_BATCH = 5000

TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
SELECT_STORED = """
SELECT request_hash, status, headers::text AS headers, body FROM idempotency_keys
WHERE user_id = $1 AND scope = $2 AND key = $3 AND expires_at > now()
"""
# An expired record for the same key may still be there (cleanup runs periodically): replace it.
UPSERT_STORED = """
INSERT INTO idempotency_keys (user_id, scope, key, request_hash, status, headers, body, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, now() + make_interval(hours => $8))
ON CONFLICT (user_id, scope, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, headers = EXCLUDED.headers,
    body = EXCLUDED.body, created_at = now(), expires_at = EXCLUDED.expires_at
"""
# Batches keep each delete's locks and WAL burst small on a big table.
DELETE_EXPIRED = """
DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1))
"""


@dataclass(frozen=True)
class StoredResponse:
    """What the first request answered; JSON text body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    replayed: bool = False

    def response_headers(self) -> dict[str, str]:
        return {**self.headers, "Idempotent-Replayed": "true"} if self.replayed else dict(self.headers)


def parse_key(value: str | None) -> str | None:
    """The header's key, None when absent; a malformed key is a 422."""
    if value is None:
        return None
    if not _KEY.match(value):
        raise ValidationFailed({HEADER: ["Must be 1 to 255 visible ASCII characters (a UUID is a good choice)."]})
    return value


def fingerprint(body: Any) -> bytes:
    """SHA-256 of the body as canonical JSON: key order and whitespace do not make another request."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


def lock_id(user_id: int, scope: str, key: str) -> int:
    digest = hashlib.blake2b(f"{user_id}\x00{scope}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)  # advisory locks take a signed bigint


async def run_once(conn: asyncpg.Connection, *, user_id: int, scope: str, key: str | None, request_body: Any,
                   action: Callable[[asyncpg.Connection], Awaitable[StoredResponse]]) -> StoredResponse:
    """Run ``action`` in a transaction, or replay what it answered the first time for this key.

    :param scope: the endpoint, e.g. ``'POST /api/v1/tasks'``: one key may be used on two endpoints.
    :param key: from ``parse_key``; None runs the action with no idempotency at all.
    :param request_body: the parsed JSON body; the same key with another body is a 422.
    :raises Conflict: a request with this key is still running.
    """
    if key is None:
        async with conn.transaction():
            return await action(conn)
    request_hash = fingerprint(request_body)
    async with conn.transaction():
        if not await conn.fetchval(TRY_LOCK, lock_id(user_id, scope, key)):
            raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly",
                           headers={"Retry-After": "1"})
        stored = await conn.fetchrow(SELECT_STORED, user_id, scope, key)
        if stored is not None:
            if stored["request_hash"] != request_hash:
                raise ValidationFailed({HEADER: ["This key was already used with a different request body."]},
                                       detail="Idempotency-Key reused with a different request body")
            return StoredResponse(stored["status"], json.loads(stored["headers"]), stored["body"], replayed=True)
        response = await action(conn)
        # JSON as text both ways: works whatever type codecs the connection has (pool, worker, test).
        await conn.execute(UPSERT_STORED, user_id, scope, key, request_hash, response.status,
                           json.dumps(response.headers), response.body, TTL_HOURS)
        return response


async def delete_expired_idempotency_keys(conn: asyncpg.Connection) -> int:
    """Delete records past their 24 h; returns how many (for the worker's cron and its log)."""
    total = 0
    while True:
        status = await conn.execute(DELETE_EXPIRED, CLEANUP_BATCH)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < CLEANUP_BATCH:
            return total
