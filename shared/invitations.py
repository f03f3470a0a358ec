"""Invitations to a project: by email, through the outbox, single use, 7 days, the token stored only hashed.

Like the verification and reset links: the database keeps the token's SHA-256, the outbox row keeps the
link only until the mail is sent (or the invitation expired unsent), then scrubs it. Accepting checks,
in this order: a live token (spent, revoked or unknown: 404), not expired (410), the signed-in
account's verified email is the invited one (403), not a member already (409). A refused attempt
changes nothing (every check runs before the one write, under a row lock).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from shared import audit, events, rights
from shared.config import Settings
from shared.db.pagination import decode_id_cursor, page
from shared.errors import Conflict, Forbidden, Gone, NotFound
from shared.mail import outbox
from shared.projects import Changed, get_member, get_project, member_out
from shared.security import new_token, token_digest
from shared.tasks import MAX_ID

TTL = timedelta(days=7)
COLUMNS = "i.id, i.project_id, i.email, i.role, i.invited_by, i.created_at, i.expires_at"
PENDING = "i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()"
SELECT_MEMBER_EMAIL = """
SELECT 1 FROM project_members AS m JOIN users AS u ON u.id = m.user_id WHERE m.project_id = $1 AND u.email = $2
"""
# A newer invitation of the same address replaces the older one: only the newest link works.
REVOKE_SAME_EMAIL = """
UPDATE project_invitations SET revoked_at = now()
WHERE project_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL
"""
INSERT_INVITATION = f"""
INSERT INTO project_invitations AS i (project_id, email, role, token_hash, invited_by, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + $6::interval)
RETURNING {COLUMNS}
"""
SELECT_PENDING_PAGE = f"""
SELECT {COLUMNS} FROM project_invitations AS i
WHERE i.project_id = $1 AND {PENDING} AND ($2::bigint IS NULL OR i.id > $2) ORDER BY i.id LIMIT $3
"""
REVOKE = f"UPDATE project_invitations AS i SET revoked_at = now() WHERE i.id = $1 AND i.project_id = $2 AND {PENDING}"
SELECT_BY_TOKEN = """
SELECT i.id, i.project_id, i.email, i.role, i.expires_at <= now() AS expired
FROM project_invitations AS i
WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL
FOR UPDATE
"""
SELECT_ACCOUNT = "SELECT u.email, u.email_verified FROM users AS u WHERE u.id = $1"
SELECT_IS_MEMBER = "SELECT 1 FROM project_members WHERE project_id = $1 AND user_id = $2"
ADD_MEMBER = "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)"
MARK_ACCEPTED = "UPDATE project_invitations SET accepted_at = now(), accepted_by = $2 WHERE id = $1"
TOUCH = "UPDATE projects SET updated_at = now(), version = version + 1 WHERE id = $1"
SELECT_INVITER = "SELECT COALESCE(NULLIF(u.name, ''), u.email) FROM users AS u WHERE u.id = $1"


def invitation_out(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "email": row["email"], "role": row["role"], "invited_by": row["invited_by"],
            "created_at": row["created_at"], "expires_at": row["expires_at"]}


async def invite(conn: asyncpg.Connection, settings: Settings, *, project_id: int, user_id: int, is_admin: bool,
                 user_email: str, email: str, role: str) -> int | None:
    """Create the invitation and queue its mail in one transaction; returns the outbox id to dispatch.

    Needs admin; the role must be below the inviter's own (403). The caller's own address or a member's: 409.
    """
    async with conn.transaction():
        project = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin,
                                    needed=rights.ADMIN, for_update=True)
        if project["is_inbox"]:
            raise Conflict("The Inbox cannot be shared; create a project to work with others")
        if rights.rank(role) >= rights.rank(project["role"]):
            raise Forbidden(f"As {project['role']} you can only invite with a role below {project['role']}")
        if email == user_email:
            raise Conflict("You cannot invite yourself")
        if await conn.fetchval(SELECT_MEMBER_EMAIL, project_id, email):
            raise Conflict("That address belongs to a member already")
        await conn.execute(REVOKE_SAME_EMAIL, project_id, email)
        token, digest = new_token()
        await conn.fetchrow(INSERT_INVITATION, project_id, email, role, digest, user_id, TTL)
        link = f"{settings.public_url}/invitations/accept?token={token}"
        context = {"project": project["name"], "inviter": await conn.fetchval(SELECT_INVITER, user_id),
                   "role": role, "token": token, "link": link, "expires_days": TTL.days}
        return await outbox.queue_email(conn, to=email, template="project_invitation", context=context,
                                        secrets_ttl=TTL)


async def list_pending(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool, limit: int,
                       cursor: str | None, secret: str) -> tuple[list[asyncpg.Record], str | None]:
    scope = f"invitations:{project_id}"
    after = decode_id_cursor(secret, scope, cursor)
    await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin, needed=rights.ADMIN)
    rows = await conn.fetch(SELECT_PENDING_PAGE, project_id, after, limit + 1)
    return page(rows, limit, lambda row: [row["id"]], secret, scope)


async def revoke(conn: asyncpg.Connection, *, project_id: int, invitation_id: int, user_id: int,
                 is_admin: bool) -> None:
    async with conn.transaction():
        await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin, needed=rights.ADMIN,
                          for_update=True)
        if not 1 <= invitation_id <= MAX_ID or (await conn.execute(REVOKE, invitation_id, project_id)).endswith(" 0"):
            raise NotFound("No such pending invitation")


async def accept(conn: asyncpg.Connection, *, token: str, user_id: int) -> Changed:
    """Make the signed-in account a member with the invited role; returns the project as they now see it."""
    async with conn.transaction():
        invitation = await conn.fetchrow(SELECT_BY_TOKEN, token_digest(token))
        if invitation is None:
            raise NotFound("This invitation is unknown, already used or revoked")
        if invitation["expired"]:
            raise Gone("This invitation has expired; ask for a new one")
        account = await conn.fetchrow(SELECT_ACCOUNT, user_id)
        if account["email"] != invitation["email"] or not account["email_verified"]:
            raise Forbidden("This invitation is for another email address; sign in with the invited, verified "
                            "address")
        project_id = invitation["project_id"]
        if await conn.fetchval(SELECT_IS_MEMBER, project_id, user_id):
            raise Conflict("You are a member of this project already")
        await conn.execute(ADD_MEMBER, project_id, user_id, invitation["role"])
        await conn.execute(MARK_ACCEPTED, invitation["id"], user_id)
        await conn.execute(TOUCH, project_id)
        await events.record(conn, "member.added", project_id=project_id, actor_id=user_id,
                            data=member_out(await get_member(conn, project_id, user_id)))
        await audit.record(conn, "member.added", actor_id=user_id, subject_type="project", subject_id=project_id,
                           detail={"user_id": user_id, "role": invitation["role"], "invitation_id": invitation["id"]})
        project = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=False, for_update=True)
    return Changed(project, frozenset(project["audience"] or ()))
