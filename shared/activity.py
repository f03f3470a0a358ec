"""Activity: a project's or a task's events, newest first, read from the change feed (shared.events).

A viewer of the project (or of the task) reads it. A task's activity covers its comments and files too
(their events carry the task's id); a task moved between projects shows the events of the projects the
caller can see. Pages are keyset on the feed position, newest first; only committed rows are read, so a
walk never repeats or skips an event that existed for the whole walk.
"""
from __future__ import annotations

from typing import Any

import asyncpg

from shared import events, rights
from shared.db.pagination import decode_cursor, encode_cursor
from shared.errors import ValidationFailed
from shared.projects import get_project
from shared.tasks import get_task_for_user

_BEFORE = "($2::text IS NULL OR (e.xid, e.id) < ($2::text::xid8, $3::bigint))"
# $1 project, $2/$3 before this position, $4 rows.
SELECT_PROJECT_PAGE = f"""
SELECT {events.EVENT_COLUMNS} FROM events AS e LEFT JOIN users AS u ON u.id = e.actor_id
WHERE e.project_id = $1 AND {_BEFORE}
ORDER BY e.xid DESC, e.id DESC LIMIT $4
"""
# $1 task, $2/$3 before, $4 rows, $5 user, $6 site admin: only events of projects the caller can see.
_JOIN, _ROLE, _VISIBLE = rights.access("e.project_id", "$5", "$6")
SELECT_TASK_PAGE = f"""
SELECT {events.EVENT_COLUMNS} FROM events AS e LEFT JOIN users AS u ON u.id = e.actor_id {_JOIN}
WHERE e.task_id = $1 AND {_BEFORE} AND {_VISIBLE}
ORDER BY e.xid DESC, e.id DESC LIMIT $4
"""


def _before(secret: str, scope: str, cursor: str | None) -> tuple[str | None, int]:
    if not cursor:
        return None, 0
    values = decode_cursor(secret, scope, cursor)
    if len(values) != 2 or not all(type(v) is int and 0 <= v < 2**63 for v in values):
        raise ValidationFailed({"cursor": ["Invalid cursor; use the next_cursor of a previous page"]})
    return str(values[0]), values[1]


def _page(rows: list[asyncpg.Record], limit: int, secret: str, scope: str,
          user_id: int) -> tuple[list[dict[str, Any]], str | None]:
    items = rows[:limit]
    cursor = encode_cursor(secret, scope, [items[-1]["xid"], items[-1]["id"]]) if len(rows) > limit else None
    return [events.event_out(secret, user_id, row) for row in items], cursor


async def project_activity(conn: asyncpg.Connection, *, project_id: int, user_id: int, is_admin: bool, limit: int,
                           cursor: str | None, secret: str) -> tuple[list[dict[str, Any]], str | None]:
    scope = f"activity:project:{project_id}"
    before = _before(secret, scope, cursor)
    await get_project(conn, project_id=project_id, user_id=user_id, is_admin=is_admin)
    rows = await conn.fetch(SELECT_PROJECT_PAGE, project_id, *before, limit + 1)
    return _page(rows, limit, secret, scope, user_id)


async def task_activity(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool, limit: int,
                        cursor: str | None, secret: str) -> tuple[list[dict[str, Any]], str | None]:
    scope = f"activity:task:{task_id}"
    before = _before(secret, scope, cursor)
    await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin)
    rows = await conn.fetch(SELECT_TASK_PAGE, task_id, *before, limit + 1, user_id, is_admin)
    return _page(rows, limit, secret, scope, user_id)


def describe(event: dict[str, Any]) -> str:
    """One line in words for the activity pages: who did what."""
    who = (event["actor"] or {}).get("name") or "Someone"
    data = event["data"]
    title = data.get("title")
    member = (data.get("user") or {}).get("name") or (data.get("user") or {}).get("email")
    return {
        "task.created": f"{who} created “{title}”",
        "task.updated": f"{who} changed “{title}”",
        "task.completed": f"{who} completed “{title}”",
        "task.deleted": f"{who} deleted a task",
        "task.restored": f"{who} restored “{title}”",
        "comment.created": f"{who} commented",
        "comment.updated": f"{who} edited a comment",
        "comment.deleted": f"{who} deleted a comment",
        "attachment.created": f"{who} attached {data.get('filename', 'a file')}",
        "attachment.deleted": f"{who} removed a file",
        "project.created": f"{who} created the project",
        "project.updated": f"{who} changed the project's settings",
        "project.deleted": f"{who} deleted the project",
        "member.added": f"{member} joined as {data.get('role')}",
        "member.updated": f"{who} made {member} {data.get('role')}",
        "member.removed": f"{member} left" if (event["actor"] or {}).get("id") == (data.get("user") or {}).get("id")
        else f"{who} removed {member}",
    }.get(event["type"], f"{who}: {event['type']}")
