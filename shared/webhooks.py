"""Webhooks: a user's subscription to their projects' events, delivered by the worker pool (worker.jobs.webhooks).

The secret (``whsec_`` + base64 of 32 random bytes, Standard Webhooks) is shown once, in the creation's
answer; the database keeps it sealed with AES-GCM under a key derived from SECRET_KEY (like the password
pre-hash's own key), because the worker must read it again to sign each attempt.

A URL must be https (http only with WEBHOOK_ALLOW_PRIVATE) and must not name a non-public address; the
name's addresses are checked again at every connection (worker.jobs.webhooks.PublicResolver), so a name
that resolves elsewhere later (DNS rebinding) is refused when delivering.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import audit, events, rights
from shared.db.pagination import decode_id_cursor, encode_cursor
from shared.errors import NotFound, field_error
from shared.projects import get_project
from shared.tasks import MAX_ID

SECRET_BYTES = 32
_KEY_LABEL = b"taskdeck webhook secrets v1"
COLUMNS = "w.id, w.url, w.events, w.project_id, w.active, w.created_at"
INSERT = f"""
INSERT INTO webhooks AS w (owner_id, url, events, project_id, secret_sealed) VALUES ($1, $2, $3, $4, $5)
RETURNING {COLUMNS}
"""
SELECT_ONE = f"SELECT {COLUMNS} FROM webhooks AS w WHERE w.id = $1 AND w.owner_id = $2"
SELECT_PAGE = f"""
SELECT {COLUMNS} FROM webhooks AS w WHERE w.owner_id = $1 AND ($2::bigint IS NULL OR w.id > $2) ORDER BY w.id LIMIT $3
"""
UPDATE = f"""
UPDATE webhooks AS w SET url = COALESCE($3, w.url), events = COALESCE($4, w.events),
    active = COALESCE($5, w.active),
    failing_since = CASE WHEN $5 THEN NULL ELSE w.failing_since END,
    disabled_reason = CASE WHEN $5 THEN NULL ELSE w.disabled_reason END
WHERE w.id = $1 AND w.owner_id = $2 RETURNING {COLUMNS}
"""
DELETE = "DELETE FROM webhooks WHERE id = $1 AND owner_id = $2"
INSERT_PING = """
INSERT INTO webhook_deliveries (webhook_id, event_type, msg_id, payload) VALUES ($1, 'ping', $2, $3::text::jsonb)
RETURNING id
"""
DELIVERY_COLUMNS = ("d.id, d.event_id, d.event_type, d.attempt, d.status, d.response_status, d.error, "
                    "d.duration_ms, d.created_at, d.next_attempt_at")
SELECT_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS}, (SELECT e.xid::text::bigint FROM events AS e WHERE e.id = d.event_id) AS xid
FROM webhook_deliveries AS d JOIN webhooks AS w ON w.id = d.webhook_id
WHERE d.webhook_id = $1 AND w.owner_id = $2 AND ($3::bigint IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4
"""


@lru_cache(maxsize=8)
def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def seal(secret_key: str, secret: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(secret_key)).encrypt(nonce, secret.encode(), _KEY_LABEL)


def unseal(secret_key: str, sealed: bytes) -> str:
    return AESGCM(_key(secret_key)).decrypt(sealed[:12], sealed[12:], _KEY_LABEL).decode()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL if it may be a destination: https (or http when private addresses are allowed), a host, and
    no literal non-public address. Names are checked when connecting."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number or out of range)
    except ValueError:
        raise field_error("url", "Must be a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise field_error("url", "Must be an https:// URL" if not allow_private else "Must be an http(s):// URL")
    if parts.username or parts.password:
        raise field_error("url", "Must not carry credentials")
    if not allow_private and not is_public_host(parts.hostname):
        raise field_error("url", "Must not point at a loopback, private, link-local or other non-public address")
    return url


def is_public_host(host: str) -> bool:
    """False for a literal non-public address or a name that is local by definition; other names: True
    (their addresses are checked at connect time)."""
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith((".localhost", ".local", ".internal")):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return is_public_address(address)


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def out(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"], "events": list(row["events"]), "project_id": row["project_id"],
            "active": row["active"], "created_at": row["created_at"]}


def _check_events(types: list[str]) -> list[str]:
    if types != ["*"] and (not types or any(t not in events.TYPES for t in types) or len(set(types)) != len(types)):
        raise field_error("events", 'A list of distinct event types, or ["*"]')
    return types


async def create(conn: asyncpg.Connection, *, secret_key: str, user_id: int, is_admin: bool, url: str,
                 types: list[str], project_id: int | None, allow_private: bool) -> tuple[dict[str, Any], str]:
    """(the webhook, its secret). With ``project_id`` the caller must be an admin of that project."""
    check_url(url, allow_private=allow_private)
    _check_events(types)
    async with conn.transaction():
        if project_id is not None:
            await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin, needed=rights.ADMIN)
        secret = new_secret()
        row = await conn.fetchrow(INSERT, user_id, url, types, project_id, seal(secret_key, secret))
        await audit.record(conn, "webhook.created", actor_id=user_id, subject_type="webhook", subject_id=row["id"],
                           detail={"url": url, "project_id": project_id})
    return out(row), secret


def _id(webhook_id: int) -> int:
    if not 1 <= webhook_id <= MAX_ID:
        raise NotFound("No such webhook")
    return webhook_id


async def get(conn: asyncpg.Connection, *, webhook_id: int, user_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(SELECT_ONE, _id(webhook_id), user_id)
    if row is None:
        raise NotFound("No such webhook")
    return out(row)


async def list_page(conn: asyncpg.Connection, *, user_id: int, limit: int, cursor: str | None,
                    secret: str) -> tuple[list[dict[str, Any]], str | None]:
    scope = f"webhooks:{user_id}"
    rows = await conn.fetch(SELECT_PAGE, user_id, decode_id_cursor(secret, scope, cursor), limit + 1)
    items = [out(row) for row in rows[:limit]]
    return items, encode_cursor(secret, scope, [items[-1]["id"]]) if len(rows) > limit else None


async def update(conn: asyncpg.Connection, *, webhook_id: int, user_id: int, changes: dict[str, Any],
                 allow_private: bool) -> dict[str, Any]:
    if "url" in changes:
        check_url(changes["url"], allow_private=allow_private)
    if "events" in changes:
        _check_events(changes["events"])
    row = await conn.fetchrow(UPDATE, _id(webhook_id), user_id, changes.get("url"), changes.get("events"),
                              changes.get("active"))
    if row is None:
        raise NotFound("No such webhook")
    return out(row)


async def delete(conn: asyncpg.Connection, *, webhook_id: int, user_id: int) -> None:
    async with conn.transaction():
        if (await conn.execute(DELETE, _id(webhook_id), user_id)).endswith(" 0"):
            raise NotFound("No such webhook")
        await audit.record(conn, "webhook.deleted", actor_id=user_id, subject_type="webhook", subject_id=webhook_id)


async def ping(conn: asyncpg.Connection, *, webhook_id: int, user_id: int) -> int:
    """Queue a ``ping`` delivery (whatever the webhook's ``events``); returns the delivery id."""
    hook = await get(conn, webhook_id=webhook_id, user_id=user_id)
    msg_id = "msg_ping_" + base64.urlsafe_b64encode(os.urandom(12)).decode()
    body = {"id": msg_id, "type": "ping", "project_id": hook["project_id"], "task_id": None, "actor": None,
            "at": events.rfc3339(datetime.now(timezone.utc)), "data": {"webhook_id": hook["id"]}}
    return int(await conn.fetchval(INSERT_PING, hook["id"], msg_id, json.dumps(body)))


async def deliveries(conn: asyncpg.Connection, *, webhook_id: int, user_id: int, limit: int, cursor: str | None,
                     secret: str) -> tuple[list[dict[str, Any]], str | None]:
    scope = f"deliveries:{webhook_id}"
    before = decode_id_cursor(secret, scope, cursor)
    await get(conn, webhook_id=webhook_id, user_id=user_id)
    rows = await conn.fetch(SELECT_DELIVERIES, webhook_id, user_id, before, limit + 1)
    items = []
    for row in rows[:limit]:
        item = dict(row)
        xid = item.pop("xid")  # the event's id as its owner sees it everywhere else (a cursor of theirs)
        position = None if xid is None else events.Position(xid, row["event_id"])
        item["event_id"] = None if position is None else events.encode(secret, user_id, position)
        items.append(item)
    return items, encode_cursor(secret, scope, [items[-1]["id"]]) if len(rows) > limit else None
