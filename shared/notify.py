"""Mails about collaboration: a task assigned to someone, a comment on a task assigned to someone.

Written to the outbox in the transaction of the change that causes them (so a rolled-back change sends
nothing), one per event: the dedup key names the event (the task's version for an assignment, the
comment's id), so however often a request or job is retried the outbox holds one row. Nobody whose
``email_notifications`` is off, or who is deactivated, gets one; nobody is mailed about their own act.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import asyncpg

from shared.mail import outbox

# The recipient and the actor in one query; no row when the recipient does not want mail.
SELECT_RECIPIENT = """
SELECT u.id, u.email, u.name, (SELECT COALESCE(NULLIF(a.name, ''), a.email) FROM users AS a WHERE a.id = $2) AS actor
FROM users AS u WHERE u.id = $1 AND u.email_notifications AND u.is_active
"""


def task_title(task: Mapping[str, Any]) -> str:
    return str(json.loads(task["body"])["title"])


async def _queue(conn: asyncpg.Connection, *, user_id: int, actor_id: int, template: str, dedup_key: str,
                 context: Mapping[str, Any]) -> int | None:
    if user_id == actor_id:
        return None
    row = await conn.fetchrow(SELECT_RECIPIENT, user_id, actor_id)
    if row is None:
        return None
    return await outbox.queue_email(conn, to=row["email"], template=template, user_id=row["id"],
                                    dedup_key=dedup_key,
                                    context={"name": row["name"] or row["email"], "actor": row["actor"], **context})


async def task_assigned(conn: asyncpg.Connection, *, task: Mapping[str, Any], actor_id: int) -> int | None:
    """``task`` is a task row (``shared.tasks.RETURNING``) after the change that set its assignee."""
    return await _queue(conn, user_id=task["assignee_id"], actor_id=actor_id, template="task_assigned",
                        dedup_key=f"task-assigned:{task['id']}:{task['version']}",
                        context={"title": task_title(task), "path": f"/tasks/{task['id']}"})


async def comment_on_assigned(conn: asyncpg.Connection, *, task: Mapping[str, Any], comment_id: int,
                              body: str, actor_id: int) -> int | None:
    if task["assignee_id"] is None:
        return None
    return await _queue(conn, user_id=task["assignee_id"], actor_id=actor_id, template="task_commented",
                        dedup_key=f"comment:{comment_id}",
                        context={"title": task_title(task), "path": f"/tasks/{task['id']}", "excerpt": body[:500]})
