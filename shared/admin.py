"""Admin operations on users, and the service-wide counters."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared import accounts, audit, exports, tasks
from shared.errors import Conflict, Forbidden, NotFound
from shared.db.pagination import decode_cursor, page

# Filters are optional: a NULL parameter switches its condition off, so one statement (and one plan
# shape) serves every combination. `q` is a substring of email or name.
LIST_USERS = f"""
SELECT {accounts.USER_COLUMNS}
FROM users AS u
WHERE ($1::text IS NULL OR u.email ILIKE '%' || $1 || '%' OR u.name ILIKE '%' || $1 || '%')
  AND ($2::text IS NULL OR u.role = $2)
  AND ($3::boolean IS NULL OR u.is_active = $3)
  AND ($4::timestamptz IS NULL OR (u.created_at, u.id) < ($4, $5))
ORDER BY u.created_at DESC, u.id DESC
LIMIT $6
"""
UPDATE_USER = f"""
UPDATE users AS u SET role = COALESCE($2, u.role), is_active = COALESCE($3, u.is_active), updated_at = now()
WHERE u.id = $1
RETURNING {accounts.USER_COLUMNS}
"""
USER_COUNTS = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE is_active) AS active,
       count(*) FILTER (WHERE role = 'admin') AS admins,
       count(*) FILTER (WHERE email_verified) AS verified
FROM users
"""
OUTBOX_COUNTS = "SELECT status, count(*) AS n FROM email_outbox GROUP BY status"
# Every role or active-state change takes this transaction-level lock first, so "is an active admin left?"
# is answered by one change at a time: two admins removing each other at once cannot both see the other.
LOCK_ADMIN_CHANGES = "SELECT pg_advisory_xact_lock(hashtext('taskdeck:admin-changes'))"
# Under the lock, the acting admin must still be one: the auth check before it may have seen an older role.
ACTING_ADMIN = "SELECT 1 FROM users WHERE id = $1 AND role = 'admin' AND is_active"
ACTIVE_ADMINS = "SELECT count(*) FROM users WHERE role = 'admin' AND is_active"
CURSOR_SCOPE = "admin-users"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(conn: asyncpg.Connection, *, secret: str, limit: int, cursor: str | None = None,
                     q: str | None = None, role: str | None = None,
                     is_active: bool | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of users, newest first, and the cursor of the next page."""
    scope = f"{CURSOR_SCOPE}:{q}:{role}:{is_active}"
    after_created, after_id = None, None
    if cursor:
        values = decode_cursor(secret, scope, cursor)
        after_created, after_id = datetime.fromisoformat(values[0]), int(values[1])
    rows = await conn.fetch(LIST_USERS, _escape_like(q) if q else None, role, is_active, after_created,
                            after_id, limit + 1)
    items, next_cursor = page([accounts.user_out(r) for r in rows], limit,
                              lambda u: [u["created_at"].isoformat(), u["id"]], secret, scope)
    return items, next_cursor


async def update_user(conn: asyncpg.Connection, *, user_id: int, acting_admin_id: int, role: str | None = None,
                      is_active: bool | None = None) -> dict[str, Any]:
    """Change role/active state. Deactivating ends every session at once; the last active admin stays one.

    Call inside a transaction (the lock and the checks hold until it commits).
    """
    if user_id == acting_admin_id and (role == "user" or is_active is False):
        raise Conflict("Admins cannot demote or deactivate themselves; ask another admin")
    await conn.execute(LOCK_ADMIN_CHANGES)  # held until the caller's transaction ends
    if await conn.fetchval(ACTING_ADMIN, acting_admin_id) is None:
        raise Forbidden("This action needs the admin role")
    row = await conn.fetchrow(UPDATE_USER, user_id, role, is_active)
    if row is None:
        raise NotFound("No such user")
    if await conn.fetchval(ACTIVE_ADMINS) == 0:  # raising rolls the change back
        raise Conflict("This would leave no active admin")
    if is_active is False:
        await accounts.revoke_all_sessions(conn, user_id=user_id, reason="deactivated")
    if role is not None:
        await audit.record(conn, "user.role_changed", actor_id=acting_admin_id, subject_type="user",
                           subject_id=user_id, detail={"role": role})
    if is_active is not None:
        await audit.record(conn, "user.active_changed", actor_id=acting_admin_id, subject_type="user",
                           subject_id=user_id, detail={"is_active": is_active})
    return accounts.user_out(row)


async def user_counts(conn: asyncpg.Connection) -> dict[str, int]:
    return dict(await conn.fetchrow(USER_COUNTS))


async def email_counts(conn: asyncpg.Connection) -> dict[str, int]:
    counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0}
    counts.update({row["status"]: row["n"] for row in await conn.fetch(OUTBOX_COUNTS)})
    return counts


async def service_stats(conn: asyncpg.Connection) -> dict[str, Any]:
    """Everything /api/v1/admin/stats shows."""
    return {"users": await user_counts(conn), "tasks": await tasks.task_counts_by_status(conn),
            "jobs": await exports.job_counts_by_status(conn), "emails": await email_counts(conn)}
