"""The site audit log: who did what security-relevant thing, from where; append-only (a trigger), read by
site admins (GET /api/v1/admin/audit, /admin).

``record(conn, type, ...)`` writes in the caller's transaction, so the entry commits with the action; the
request's address, user agent and id come from ``origin`` (set once per request by the web tier, and the
request id from the logs' context), so deep domain code needs no request object. ``detail`` carries only
plain facts (a role, an email typed at login); never a password, token or secret.
"""
from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared.db.pagination import decode_cursor, encode_cursor
from shared.errors import ValidationFailed
from shared.observability.logs import request_id_var

TYPES = ("auth.login", "auth.login_failed", "auth.logout", "auth.refresh_reuse", "user.password_changed",
         "user.password_reset", "user.role_changed", "user.active_changed", "project.deleted",
         "project.owner_changed", "member.added", "member.updated", "member.removed", "webhook.created",
         "webhook.deleted", "webhook.disabled")
SECRET_WORDS = ("password", "token", "secret", "hash")
INSERT = """
INSERT INTO audit_log (type, actor_id, subject_type, subject_id, ip, user_agent, request_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)
"""
# $1 type, $2 actor, $3 since, $4 until, $5 before id, $6 rows.
SELECT_PAGE = """
SELECT id, type, actor_id, subject_type, subject_id, ip, user_agent, request_id, at, detail::text AS detail
FROM audit_log
WHERE ($1::text IS NULL OR type = $1) AND ($2::bigint IS NULL OR actor_id = $2)
  AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4)
  AND ($5::bigint IS NULL OR id < $5)
ORDER BY id DESC LIMIT $6
"""
DELETE_OLD = "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)"


@dataclass(frozen=True)
class Origin:
    ip: str | None = None
    user_agent: str | None = None


origin: contextvars.ContextVar[Origin] = contextvars.ContextVar("audit_origin", default=Origin())


async def record(conn: asyncpg.Connection, type_: str, *, actor_id: int | None, subject_type: str | None = None,
                 subject_id: int | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one entry on ``conn`` (in the caller's transaction when it has one)."""
    assert type_ in TYPES, type_
    detail = detail or {}
    assert not any(word in key.lower() for key in detail for word in SECRET_WORDS), "never a secret in the audit"
    where = origin.get()
    request_id = request_id_var.get()
    await conn.execute(INSERT, type_, actor_id, subject_type, subject_id, where.ip,
                       (where.user_agent or "")[:500] or None, None if request_id == "-" else request_id[:200],
                       json.dumps(detail, default=str))


def _out(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "type": row["type"], "actor_id": row["actor_id"], "subject_type": row["subject_type"],
            "subject_id": row["subject_id"], "ip": row["ip"], "user_agent": row["user_agent"],
            "request_id": row["request_id"], "at": row["at"], "detail": json.loads(row["detail"])}


async def list_entries(conn: asyncpg.Connection, *, secret: str, limit: int, cursor: str | None,
                       type_: str | None = None, actor_id: int | None = None, since: datetime | None = None,
                       until: datetime | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of entries, newest first."""
    scope = f"audit:{type_}:{actor_id}:{since}:{until}"
    before = None
    if cursor:
        values = decode_cursor(secret, scope, cursor)
        if len(values) != 1 or type(values[0]) is not int:
            raise ValidationFailed({"cursor": ["Invalid cursor; use the next_cursor of a previous page"]})
        before = values[0]
    rows = await conn.fetch(SELECT_PAGE, type_, actor_id, since, until, before, limit + 1)
    items = [_out(row) for row in rows[:limit]]
    return items, encode_cursor(secret, scope, [items[-1]["id"]]) if len(rows) > limit else None


async def delete_expired(conn: asyncpg.Connection, *, older_than: datetime, batch: int) -> int:
    """One bounded batch of entries older than the retention; the trigger lets only this delete through."""
    async with conn.transaction():
        await conn.execute("SET LOCAL taskdeck.audit_retention = 'on'")
        status = await conn.execute(DELETE_OLD, older_than, batch)
    return int(status.split()[-1])
