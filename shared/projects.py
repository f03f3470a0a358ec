"""Projects and their members: create, list, change, archive, delete; roles, leaving, ownership transfer.

Every read names its project through ``shared.rights`` (the membership join, in the same statement);
every write locks the project row first, so two admins acting at once are serialised per project.
Invitations are in ``shared.invitations``. A write returns who must see it at once (``audience``):
the callers invalidate those members' cached views (``shared.cache``) after the commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared import audit, events, rights
from shared.db.pagination import decode_id_cursor, page
from shared.errors import Conflict, Forbidden, NotFound, PreconditionFailed
from shared.tasks import MAX_ID, etag_matches

COLUMNS = ("p.id, p.name, p.description, p.color, p.is_inbox, p.owner_id, p.archived_at, p.created_at, "
           "p.updated_at, p.version, "
           "(SELECT count(*) FROM project_members AS c WHERE c.project_id = p.id)::int AS member_count")
AUDIENCE = "(SELECT array_agg(a.user_id) FROM project_members AS a WHERE a.project_id = p.id) AS audience"
# $1 project, $2 user, $3 site admin.
_JOIN, _ROLE, _VISIBLE = rights.access("p.id", "$2", "$3")
SELECT_PROJECT = f"SELECT {COLUMNS}, {_ROLE} AS role FROM projects AS p {_JOIN} WHERE p.id = $1 AND {_VISIBLE}"
SELECT_PROJECT_LOCKED = (f"SELECT {COLUMNS}, {_ROLE} AS role, {AUDIENCE} FROM projects AS p {_JOIN} "
                         f"WHERE p.id = $1 AND {_VISIBLE} FOR UPDATE OF p")
# The caller's projects: $1 user, $2 archived filter (NULL: all), $3 after this id, $4 rows.
SELECT_PAGE = f"""
SELECT {COLUMNS}, m.role FROM projects AS p {rights.member("p.id", "$1")}
WHERE ($2::boolean IS NULL OR (p.archived_at IS NOT NULL) = $2) AND ($3::bigint IS NULL OR p.id > $3)
ORDER BY p.id LIMIT $4
"""
INSERT_PROJECT = """
WITH p AS (INSERT INTO projects (name, description, color, owner_id) VALUES ($1, $2, $3, $4) RETURNING id),
     m AS (INSERT INTO project_members (project_id, user_id, role) SELECT p.id, $4, 'owner' FROM p)
SELECT id FROM p
"""
UPDATE_PROJECT = """
UPDATE projects SET name = COALESCE($2, name), description = COALESCE($3, description),
    color = CASE WHEN $4 THEN $5 ELSE color END,
    archived_at = CASE WHEN $6::boolean IS NULL THEN archived_at WHEN $6 THEN COALESCE(archived_at, now()) END,
    updated_at = now(), version = version + 1
WHERE id = $1
"""
DELETE_PROJECT = "DELETE FROM projects WHERE id = $1"
MEMBER_COLUMNS = "u.id AS user_id, u.name, u.email, m.role, m.joined_at"
SELECT_MEMBER = (f"SELECT {MEMBER_COLUMNS} FROM project_members AS m JOIN users AS u ON u.id = m.user_id "
                 "WHERE m.project_id = $1 AND m.user_id = $2")
SELECT_MEMBER_PAGE = f"""
SELECT {MEMBER_COLUMNS} FROM project_members AS m JOIN users AS u ON u.id = m.user_id
WHERE m.project_id = $1 AND ($2::bigint IS NULL OR m.user_id > $2) ORDER BY m.user_id LIMIT $3
"""
SET_ROLE = "UPDATE project_members SET role = $3 WHERE project_id = $1 AND user_id = $2"
SET_OWNER = "UPDATE projects SET owner_id = $2, updated_at = now(), version = version + 1 WHERE id = $1"
DELETE_MEMBER = "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2"
# An assignee is always a member of the task's project: one who leaves is unassigned in the same transaction.
UNASSIGN = "UPDATE tasks SET assignee_id = NULL, updated_at = now(), version = version + 1 " \
           "WHERE project_id = $1 AND assignee_id = $2"
TOUCH = "UPDATE projects SET updated_at = now(), version = version + 1 WHERE id = $1"


@dataclass(frozen=True)
class Changed:
    """A committed change's result and everyone whose cached views it changes."""

    value: Any
    audience: frozenset[int]


def project_out(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "description": row["description"], "color": row["color"],
            "is_inbox": row["is_inbox"], "owner_id": row["owner_id"], "role": row["role"],
            "member_count": row["member_count"], "archived_at": row["archived_at"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def project_data(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A project as an event carries it: every field but ``role``, which is each reader's own."""
    data = project_out(row)
    del data["role"]
    return data


def member_out(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {"user": {"id": row["user_id"], "name": row["name"], "email": row["email"]}, "role": row["role"],
            "joined_at": row["joined_at"]}


def etag(row: asyncpg.Record | dict[str, Any]) -> str:
    return f'"p{row["id"]}-{row["version"]}"'


def _audience(row: asyncpg.Record, *more: int) -> frozenset[int]:
    return frozenset([*(row["audience"] or ()), *more])


async def get_project(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool,
                      needed: str = rights.VIEWER, for_update: bool = False) -> asyncpg.Record:
    """The project with the caller's effective ``role``; NotFound for a non-member, Forbidden below ``needed``."""
    if not 1 <= project_id <= MAX_ID:
        raise NotFound("No such project")
    row = await conn.fetchrow(SELECT_PROJECT_LOCKED if for_update else SELECT_PROJECT, project_id, user_id, is_admin)
    rights.require(row["role"] if row else None, needed)
    assert row is not None
    return row


async def create_project(conn: asyncpg.Connection, *, owner_id: int, data: dict[str, Any]) -> asyncpg.Record:
    project_id = await conn.fetchval(INSERT_PROJECT, data["name"], data.get("description", ""), data.get("color"),
                                     owner_id)
    row = await get_project(conn, project_id=project_id, user_id=owner_id, is_admin=False)
    await events.record(conn, "project.created", project_id=project_id, actor_id=owner_id, data=project_data(row))
    return row


async def list_projects(conn: asyncpg.Connection, *, user_id: int, archived: bool | None, limit: int,
                        cursor: str | None, secret: str) -> tuple[list[asyncpg.Record], str | None]:
    scope = f"projects:{user_id}:{archived}"
    after = decode_id_cursor(secret, scope, cursor)
    rows = await conn.fetch(SELECT_PAGE, user_id, archived, after, limit + 1)
    return page(rows, limit, lambda row: [row["id"]], secret, scope)


def _check_if_match(row: asyncpg.Record, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, etag(row), weak=False):
        raise PreconditionFailed(f"The project has changed; its current ETag is {etag(row)}",
                                 headers={"ETag": etag(row)})


async def update_project(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool,
                         changes: dict[str, Any], if_match: str | None = None) -> Changed:
    """Rename, describe, recolour, archive or unarchive (admin). The Inbox keeps its name and is never archived."""
    async with conn.transaction():
        row = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin,
                                needed=rights.ADMIN, for_update=True)
        _check_if_match(row, if_match)
        if row["is_inbox"] and ("name" in changes or changes.get("archived")):
            raise Conflict("The Inbox cannot be renamed or archived")
        after = row
        if changes:
            await conn.execute(UPDATE_PROJECT, project_id, changes.get("name"), changes.get("description"),
                               "color" in changes, changes.get("color"), changes.get("archived"))
            after = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin)
            await events.record(conn, "project.updated", project_id=project_id, actor_id=user_id,
                                data=project_data(after))
        return Changed(after, _audience(row))


async def delete_project(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool,
                         if_match: str | None = None) -> Changed:
    """Delete the project with its tasks and comments (owner). The Inbox cannot be deleted (409)."""
    async with conn.transaction():
        row = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin,
                                needed=rights.OWNER, for_update=True)
        _check_if_match(row, if_match)
        if row["is_inbox"]:
            raise Conflict("The Inbox cannot be deleted")
        await conn.execute(DELETE_PROJECT, project_id)
        await events.record(conn, "project.deleted", project_id=project_id, actor_id=user_id, data={"id": project_id},
                            also=row["audience"] or ())
        await audit.record(conn, "project.deleted", actor_id=user_id, subject_type="project", subject_id=project_id,
                           detail={"name": row["name"]})
    return Changed(None, _audience(row))


async def list_members(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool, limit: int,
                       cursor: str | None, secret: str) -> tuple[list[asyncpg.Record], str | None]:
    scope = f"members:{project_id}"
    after = decode_id_cursor(secret, scope, cursor)
    await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin)
    rows = await conn.fetch(SELECT_MEMBER_PAGE, project_id, after, limit + 1)
    return page(rows, limit, lambda row: [row["user_id"]], secret, scope)


async def get_member(conn: asyncpg.Connection, project_id: int, member_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(SELECT_MEMBER, project_id, member_id) if 1 <= member_id <= MAX_ID else None
    if row is None:
        raise NotFound("No such member")
    return row


async def change_role(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool,
                      member_id: int, role: str) -> Changed:
    """Set a member's role (admin: roles below their own, of members below them). ``owner`` is a transfer,
    by the owner only: the member becomes owner and the old owner an admin."""
    async with conn.transaction():
        project = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin,
                                    needed=rights.ADMIN, for_update=True)
        target = await get_member(conn, project_id, member_id)
        mine = project["role"]
        if role == rights.OWNER:
            if mine != rights.OWNER:
                raise Forbidden("Only the owner can hand the project over")
            if target["role"] != rights.OWNER:
                await conn.execute(SET_ROLE, project_id, project["owner_id"], rights.ADMIN)
                await conn.execute(SET_ROLE, project_id, member_id, rights.OWNER)
                await conn.execute(SET_OWNER, project_id, member_id)
                old_owner = await get_member(conn, project_id, project["owner_id"])
                await events.record(conn, "member.updated", project_id=project_id, actor_id=user_id,
                                    data=member_out(old_owner))
                await audit.record(conn, "project.owner_changed", actor_id=user_id, subject_type="project",
                                   subject_id=project_id, detail={"from": project["owner_id"], "to": member_id})
        else:
            if target["role"] == rights.OWNER:
                raise Conflict("The owner's role changes only by handing the project to another member")
            if rights.rank(role) >= rights.rank(mine) or rights.rank(target["role"]) >= rights.rank(mine):
                raise Forbidden(f"As {mine} you can only change roles below {mine}")
            await conn.execute(SET_ROLE, project_id, member_id, role)
            await conn.execute(TOUCH, project_id)
        member = member_out(await get_member(conn, project_id, member_id))
        if member["role"] != target["role"]:
            await events.record(conn, "member.updated", project_id=project_id, actor_id=user_id, data=member)
            await audit.record(conn, "member.updated", actor_id=user_id, subject_type="project", subject_id=project_id,
                               detail={"user_id": member_id, "role": member["role"]})
        return Changed(member, _audience(project))


async def remove_member(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool,
                        member_id: int) -> Changed:
    """Remove a member (admin, of a member below them) or leave (that member). The owner can do neither (409)."""
    async with conn.transaction():
        leaving = member_id == user_id
        project = await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin,
                                    needed=rights.VIEWER if leaving else rights.ADMIN, for_update=True)
        target = await get_member(conn, project_id, member_id)
        if target["role"] == rights.OWNER:
            raise Conflict("The owner can neither leave nor be removed; hand the project to another member first")
        if not leaving and rights.rank(target["role"]) >= rights.rank(project["role"]):
            raise Forbidden(f"As {project['role']} you can only remove members below {project['role']}")
        await conn.execute(UNASSIGN, project_id, member_id)
        await conn.execute(DELETE_MEMBER, project_id, member_id)
        await conn.execute(TOUCH, project_id)
        await events.record(conn, "member.removed", project_id=project_id, actor_id=user_id,
                            data=member_out(target), also=(member_id,))
        await audit.record(conn, "member.removed", actor_id=user_id, subject_type="project", subject_id=project_id,
                           detail={"user_id": member_id, "role": target["role"]})
    return Changed(None, _audience(project, member_id))
