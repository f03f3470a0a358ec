"""The trash: a deleted task and its subtasks wait 30 days before they are purged.

``tasks`` is the view of the rows not in the trash (sql/migrations/0018_task_depth.sql), so every read
elsewhere is blind to them; this module is the one that reads and writes ``all_tasks``. A delete marks
the task and every subtask still out of the trash with the same ``trash_root`` (the deleted task), and a
restore brings back exactly those rows.

Restoring a task whose parent is still in the trash answers 409 (naming the parent) rather than
restoring the parent as well: that would bring back the parent's other subtasks and whatever else went
with its own delete, which the caller did not ask for. Restore the parent first; it brings back the
subtasks deleted with it.
"""
from __future__ import annotations

import json
from typing import Any

import asyncpg

from shared import events, rights
from shared.db.pagination import decode_id_cursor, page
from shared.errors import Conflict, NotFound

RETENTION_DAYS = 30
PURGE_BATCH = 100
MAX_ID = 2**63 - 1

# Taken before any change to a project's task tree (the tree trigger takes it too): a subtask added
# while its parent is being trashed is checked after the trash committed, and refused.
LOCK_PROJECT_TREE = "SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE"
TRASH_SUBTREE = """
WITH RECURSIVE sub AS (
    SELECT t.id FROM tasks AS t WHERE t.id = $1
    UNION ALL
    SELECT t.id FROM tasks AS t JOIN sub ON t.parent_id = sub.id
)
UPDATE all_tasks SET trashed_at = now(), trash_root = $1, version = version + 1
WHERE id IN (SELECT id FROM sub)
"""
_JOIN, _ROLE, _VISIBLE = rights.access("t.project_id", "$2", "$3")
# A trashed task for one caller, locked; with its parent's trash state.
SELECT_TRASHED_FOR_WRITE = f"""
SELECT t.id, t.project_id, t.parent_id, t.trash_root, {_ROLE} AS role,
       (SELECT p.trashed_at IS NOT NULL FROM all_tasks AS p WHERE p.id = t.parent_id) AS parent_trashed,
       (SELECT array_agg(a.user_id) FROM project_members AS a WHERE a.project_id = t.project_id) AS audience
FROM all_tasks AS t {_JOIN}
WHERE t.id = $1 AND t.trashed_at IS NOT NULL AND {_VISIBLE}
FOR UPDATE OF t
"""
# An assignee who left the project while the task was in the trash (the unassignment on leaving only
# sees tasks out of the trash) is cleared on the way back.
RESTORE_SUBTREE = """
UPDATE all_tasks AS t SET trashed_at = NULL, trash_root = NULL, version = t.version + 1, updated_at = now(),
    assignee_id = CASE WHEN EXISTS (SELECT 1 FROM project_members AS a
                                    WHERE a.project_id = t.project_id AND a.user_id = t.assignee_id)
                       THEN t.assignee_id END
WHERE t.trash_root = $1
"""
# The caller's trash: the tasks they deleted (not the subtasks that went along), newest first by id.
# $1 user, $2 cursor id (NULL: first page), $3 page size + 1.
SELECT_TRASH_PAGE = """
SELECT t.id, t.trashed_at, {task_json} AS body,
       (SELECT count(*) FROM all_tasks AS s WHERE s.trash_root = t.id AND s.id <> t.id) AS subtask_count
FROM all_tasks AS t JOIN project_members AS m ON m.project_id = t.project_id AND m.user_id = $1
WHERE t.trashed_at IS NOT NULL AND t.trash_root = t.id AND ($2::bigint IS NULL OR t.id < $2)
ORDER BY t.id DESC LIMIT $3
"""
# Purge, oldest first, a bounded batch per statement: the subtasks, comments and attachment rows go by
# ON DELETE CASCADE; each attachment's file is queued in attachment_garbage by a trigger.
PURGE_BATCH_SQL = f"""
DELETE FROM all_tasks WHERE id IN (
    SELECT id FROM all_tasks
    WHERE trashed_at IS NOT NULL AND trash_root = id AND trashed_at < now() - INTERVAL '{RETENTION_DAYS} days'
    ORDER BY trashed_at LIMIT $1
)
"""


async def trash_task(conn: asyncpg.Connection, *, task_id: int, project_id: int) -> None:
    """Move a task (locked by the caller, rights checked) and its subtasks to the trash."""
    await conn.execute(LOCK_PROJECT_TREE, project_id)
    await conn.execute(TRASH_SUBTREE, task_id)


async def restore_task(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                       ) -> tuple[int, frozenset[int]]:
    """Bring back a trashed task with the subtasks trashed with it (editor).

    :return: the task id and the members whose cached views change.
    :raises NotFound: no such task in the trash (or not a member); Forbidden: below editor;
        Conflict: its parent is still in the trash.
    """
    if not 1 <= task_id <= MAX_ID:
        raise NotFound("No such task in the trash")
    async with conn.transaction():
        row = await conn.fetchrow(SELECT_TRASHED_FOR_WRITE, task_id, user_id, is_admin)
        rights.require(row["role"] if row else None, rights.EDITOR, "task in the trash")
        if row["parent_trashed"] or row["trash_root"] != task_id:
            raise Conflict(f"Its parent task {row['parent_id']} is in the trash: restore the parent first")
        await conn.execute(LOCK_PROJECT_TREE, row["project_id"])
        await conn.execute(RESTORE_SUBTREE, task_id)
        await events.record(conn, "task.restored", project_id=row["project_id"], task_id=task_id, actor_id=user_id,
                            data={"id": task_id})
    return task_id, frozenset(row["audience"] or ())


async def list_trash(conn: asyncpg.Connection, *, user_id: int, limit: int, cursor: str | None,
                     secret: str, task_json: str) -> str:
    """One page of the trash of every project the user is a member of, as the JSON body."""
    scope = f"trash:{user_id}"
    after = decode_id_cursor(secret, scope, cursor)
    rows = await conn.fetch(SELECT_TRASH_PAGE.format(task_json=task_json), user_id, after, limit + 1)
    items, next_cursor = page(rows, limit, lambda row: [row["id"]], secret, scope)
    parts = [
        '{"task":' + row["body"] + ',"trashed_at":' + json.dumps(_utc(row["trashed_at"])) +
        ',"subtask_count":' + str(row["subtask_count"]) + "}"
        for row in items
    ]
    return '{"items":[' + ",".join(parts) + '],"next_cursor":' + json.dumps(next_cursor) + "}"


def _utc(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def purge(conn: asyncpg.Connection, *, batch: int = PURGE_BATCH, max_batches: int = 50) -> int:
    """Delete what has been in the trash past the retention, ``batch`` trees per transaction.

    :return: the number of trashed tasks (deleted roots) purged.
    """
    purged = 0
    for _ in range(max_batches):
        status = await conn.execute(PURGE_BATCH_SQL, batch)
        count = int(status.split()[-1])
        purged += count
        if count < batch:
            break
    return purged
