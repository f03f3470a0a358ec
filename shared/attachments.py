"""Attachments: files on tasks. The row is the truth; the bytes live in the export storage.

The web tier streams an upload straight into ``Storage.create`` (web/api/attachments.py) and only then
records the row here, in one transaction that re-checks the task (still there, still editor) and the
uploader's quota under a lock on their user row, so two concurrent uploads cannot both slip under it.
Deleting a row, by any path, queues its file for the cleanup job (a trigger; worker/jobs/trash.py).
"""
from __future__ import annotations

import re
import unicodedata
import uuid

import asyncpg

from shared import events, rights, tasks
from shared.errors import Forbidden, NotFound, PayloadTooLarge, ValidationFailed

MAX_FILENAME = 255
# Kept as sent only when a browser cannot run it as a page or script; anything else is served as
# application/octet-stream (and every download is `attachment` with nosniff anyway).
SAFE_TYPES = frozenset({
    "application/pdf", "application/zip", "application/gzip", "application/json", "text/plain", "text/csv",
    "image/png", "image/jpeg", "image/gif", "image/webp", "audio/mpeg", "video/mp4",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
})
FALLBACK_TYPE = "application/octet-stream"
_UNSAFE = re.compile(r'[\\/:*?"<>|]')

ATTACHMENT_JSON = (
    "json_build_object('id', a.id, 'task_id', a.task_id, 'filename', a.filename, "
    "'content_type', a.content_type, 'size_bytes', a.size_bytes, 'uploaded_by', a.uploaded_by, "
    "'created_at', " + tasks.utc("a.created_at") + ", "
    "'download_url', '/api/v1/attachments/' || a.id || '/download')::text"
)
SELECT_USAGE = "SELECT COALESCE(sum(size_bytes), 0)::bigint FROM attachments WHERE uploaded_by = $1"
LOCK_USER = "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE"
INSERT_ATTACHMENT = f"""
INSERT INTO attachments AS a (task_id, filename, content_type, size_bytes, uploaded_by, storage_key)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ATTACHMENT_JSON} AS body
"""
COUNT_CHANGE = "UPDATE tasks SET attachment_count = attachment_count + $2, version = version + 1 WHERE id = $1"
_JOIN, _ROLE, _VISIBLE = rights.access("t.project_id", "$2", "$3")
# One attachment for one caller, through the `tasks` view: a trashed task's files answer 404 too.
SELECT_ATTACHMENT = f"""
SELECT a.id, a.task_id, a.filename, a.content_type, a.size_bytes, a.uploaded_by, a.storage_key,
       t.project_id, {_ROLE} AS role, (SELECT array_agg(x.user_id) FROM project_members AS x WHERE x.project_id = t.project_id)
       AS audience
FROM attachments AS a JOIN tasks AS t ON t.id = a.task_id {_JOIN}
WHERE a.id = $1 AND {_VISIBLE}
"""
SELECT_TASK_ATTACHMENTS = f"SELECT {ATTACHMENT_JSON} AS body FROM attachments AS a WHERE a.task_id = $1 ORDER BY a.id"
DELETE_ATTACHMENT = "DELETE FROM attachments WHERE id = $1 RETURNING task_id"


class QuotaExceeded(PayloadTooLarge):
    def __init__(self, quota: int) -> None:
        super().__init__(f"This upload would take your files past your storage quota of {describe_size(quota)} "
                         f"(ATTACHMENT_QUOTA_BYTES); delete some attachments first")


def describe_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def clean_filename(raw: str | None) -> str:
    """The name to keep: the last path segment, without control or path characters, at most 255 chars."""
    if raw is None or not raw.strip():
        raise ValidationFailed({"file": ["The file part needs a filename."]})
    if len(raw) > 4 * MAX_FILENAME:
        raise ValidationFailed({"file": [f"The filename is longer than {MAX_FILENAME} characters."]})
    name = re.split(r"[\\/]", raw)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C")
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if not name:
        raise ValidationFailed({"file": ["The filename has no usable characters."]})
    if len(name) > MAX_FILENAME:
        raise ValidationFailed({"file": [f"The filename is longer than {MAX_FILENAME} characters."]})
    return name


def safe_content_type(declared: str | None) -> str:
    kind = (declared or "").split(";")[0].strip().lower()
    return kind if kind in SAFE_TYPES else FALLBACK_TYPE


def new_key(task_id: int) -> str:
    return f"attachments/{task_id}/{uuid.uuid4().hex}"


async def room_left(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool, quota: int) -> int:
    """Bytes the user may still upload; checks the task first (editor), before any byte is read."""
    await tasks.get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin, needed=rights.EDITOR)
    left = quota - await conn.fetchval(SELECT_USAGE, user_id)
    if left <= 0:
        raise QuotaExceeded(quota)
    return left


async def record(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool, filename: str,
                 content_type: str, size: int, key: str, quota: int) -> tuple[str, frozenset[int]]:
    """Insert the row of a stored file (the caller deletes the file if this raises).

    :return: the attachment as JSON text, and who must see the task's new count.
    """
    async with conn.transaction():
        task = await tasks.get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                             for_update=True, needed=rights.EDITOR)
        await conn.execute(LOCK_USER, user_id)
        if await conn.fetchval(SELECT_USAGE, user_id) + size > quota:
            raise QuotaExceeded(quota)
        body = await conn.fetchval(INSERT_ATTACHMENT, task_id, filename, content_type, size, user_id, key)
        await conn.execute(COUNT_CHANGE, task_id, 1)
        await events.record(conn, "attachment.created", project_id=task["project_id"], task_id=task_id,
                            actor_id=user_id, data=body)
    return body, frozenset(task["audience"] or ())


async def list_attachments(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool) -> list[str]:
    await tasks.get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin)
    return [row["body"] for row in await conn.fetch(SELECT_TASK_ATTACHMENTS, task_id)]


async def get_attachment(conn: asyncpg.Connection, *, attachment_id: int, user_id: int,
                         is_admin: bool) -> asyncpg.Record:
    """The attachment if the caller may see its task (viewer); else NotFound."""
    if not 1 <= attachment_id <= tasks.MAX_ID:
        raise NotFound("No such attachment")
    row = await conn.fetchrow(SELECT_ATTACHMENT, attachment_id, user_id, is_admin)
    rights.require(row["role"] if row else None, rights.VIEWER, "attachment")
    return row


async def delete_attachment(conn: asyncpg.Connection, *, attachment_id: int, user_id: int,
                            is_admin: bool) -> frozenset[int]:
    """Delete an attachment: its uploader (still an editor) or a project admin. The file goes by the job."""
    async with conn.transaction():
        row = await get_attachment(conn, attachment_id=attachment_id, user_id=user_id, is_admin=is_admin)
        own = row["uploaded_by"] == user_id and rights.rank(row["role"]) >= rights.rank(rights.EDITOR)
        if not own and rights.rank(row["role"]) < rights.rank(rights.ADMIN):
            raise Forbidden("Only its uploader or a project admin may delete an attachment")
        task_id = await conn.fetchval(DELETE_ATTACHMENT, attachment_id)
        if task_id is not None:
            await conn.execute(COUNT_CHANGE, task_id, -1)
            await events.record(conn, "attachment.deleted", project_id=row["project_id"], task_id=task_id,
                                actor_id=user_id, data={"id": attachment_id, "task_id": task_id})
    return frozenset(row["audience"] or ())
