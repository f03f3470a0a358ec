"""Comments on tasks: viewers read them, editors write them, authors change their own, admins remove any.

Rights come from the task's project through ``shared.tasks.get_task_for_user`` (the rights join) or,
for a comment addressed by its own id, the same join reached through the comment's task.
A comment changes its task's ``comment_count``, so the task's version moves too (its ETag must change
with its body) and every member's cached views are invalidated.
"""
from __future__ import annotations

import asyncpg

from shared import events, notify, rights
from shared.db.pagination import decode_id_cursor, page
from shared.errors import Forbidden
from shared.tasks import AUDIENCE, MAX_ID, Written, get_task_for_user, utc

COMMENT_JSON = (
    "json_build_object('id', c.id, 'task_id', c.task_id, "
    "'author', json_build_object('id', c.author_id, 'name', COALESCE(NULLIF(u.name, ''), u.email)), "
    "'body', c.body, 'created_at', " + utc("c.created_at") + ", 'updated_at', " + utc("c.updated_at") + ")::text"
)
SELECT_PAGE = f"""
SELECT c.id, {COMMENT_JSON} AS body FROM comments AS c LEFT JOIN users AS u ON u.id = c.author_id
WHERE c.task_id = $1 AND ($2::bigint IS NULL OR c.id > $2) ORDER BY c.id LIMIT $3
"""
INSERT_COMMENT = f"""
WITH c AS (INSERT INTO comments (task_id, author_id, body) VALUES ($1, $2, $3) RETURNING *)
SELECT c.id, {COMMENT_JSON} AS body FROM c LEFT JOIN users AS u ON u.id = c.author_id
"""
COUNT_CHANGE = "UPDATE tasks SET comment_count = comment_count + $2, version = version + 1 WHERE id = $1"
# A comment by its own id, with the caller's effective role in its task's project: $1 comment, $2 user, $3 admin.
_JOIN, _ROLE, _VISIBLE = rights.access("t.project_id", "$2", "$3")
SELECT_COMMENT_FOR_WRITE = f"""
SELECT c.id, c.task_id, c.author_id, t.project_id, {_ROLE} AS role, {AUDIENCE.format("t.project_id")}
FROM comments AS c JOIN tasks AS t ON t.id = c.task_id {_JOIN}
WHERE c.id = $1 AND {_VISIBLE}
FOR UPDATE OF c, t
"""
UPDATE_COMMENT = f"""
WITH c AS (UPDATE comments SET body = $2, updated_at = now() WHERE id = $1 RETURNING *)
SELECT c.id, {COMMENT_JSON} AS body FROM c LEFT JOIN users AS u ON u.id = c.author_id
"""
DELETE_COMMENT = "DELETE FROM comments WHERE id = $1"


async def list_comments(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool, limit: int,
                        cursor: str | None, secret: str) -> tuple[list[str], str | None]:
    """One page of the task's comments, oldest first (viewer)."""
    scope = f"comments:{task_id}"
    after = decode_id_cursor(secret, scope, cursor)
    await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin)
    rows = await conn.fetch(SELECT_PAGE, task_id, after, limit + 1)
    items, next_cursor = page(rows, limit, lambda row: [row["id"]], secret, scope)
    return [row["body"] for row in items], next_cursor


async def create_comment(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                         body: str) -> Written:
    """Add a comment (editor); the task's assignee is emailed (unless it is the author, or they opted out)."""
    async with conn.transaction():
        task = await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                       for_update=True, needed=rights.EDITOR)
        comment = await conn.fetchrow(INSERT_COMMENT, task_id, user_id, body)
        await conn.execute(COUNT_CHANGE, task_id, 1)
        await events.record(conn, "comment.created", project_id=task["project_id"], task_id=task_id,
                            actor_id=user_id, data=comment["body"])
        mail = await notify.comment_on_assigned(conn, task=task, comment_id=comment["id"], body=body,
                                                actor_id=user_id)
    return Written(comment, frozenset(task["audience"] or ()), (mail,))


async def _comment_for_write(conn: asyncpg.Connection, comment_id: int, user_id: int,
                             is_admin: bool) -> asyncpg.Record:
    row = await conn.fetchrow(SELECT_COMMENT_FOR_WRITE, comment_id, user_id, is_admin) \
        if 1 <= comment_id <= MAX_ID else None
    rights.require(row["role"] if row else None, rights.VIEWER, "comment")
    assert row is not None
    return row


async def update_comment(conn: asyncpg.Connection, *, comment_id: int, user_id: int, is_admin: bool,
                         body: str) -> str:
    """Change a comment's body: its author only (anyone else who can see it: 403)."""
    async with conn.transaction():
        row = await _comment_for_write(conn, comment_id, user_id, is_admin)
        if row["author_id"] != user_id:
            raise Forbidden("Only its author can edit a comment")
        text = str((await conn.fetchrow(UPDATE_COMMENT, comment_id, body))["body"])
        await events.record(conn, "comment.updated", project_id=row["project_id"], task_id=row["task_id"],
                            actor_id=user_id, data=text)
        return text


async def delete_comment(conn: asyncpg.Connection, *, comment_id: int, user_id: int, is_admin: bool) -> Written:
    """Delete a comment: its author, or an admin of the project."""
    async with conn.transaction():
        row = await _comment_for_write(conn, comment_id, user_id, is_admin)
        if row["author_id"] != user_id and rights.rank(row["role"]) < rights.rank(rights.ADMIN):
            raise Forbidden("Only its author or a project admin can delete a comment")
        await conn.execute(DELETE_COMMENT, comment_id)
        await conn.execute(COUNT_CHANGE, row["task_id"], -1)
        await events.record(conn, "comment.deleted", project_id=row["project_id"], task_id=row["task_id"],
                            actor_id=user_id, data={"id": comment_id})
    return Written(row, frozenset(row["audience"] or ()))
