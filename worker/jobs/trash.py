"""Cron jobs of the trash and the attachments.

- ``purge_trash`` (hourly): tasks 30 days in the trash go for good, in bounded batches (shared.trash.purge);
  their subtasks, comments and attachment rows follow by ON DELETE CASCADE.
- ``collect_attachment_files`` (every minute): each attachment row deleted by any path (its own delete, a
  purged task, a deleted project or user) queued its storage key in ``attachment_garbage`` (a trigger, in
  the deleting transaction). The file is deleted first, then the queue row: a retry after a crash deletes
  an already missing file, which storage treats as done, so each file is removed once and never leaks.
"""
from __future__ import annotations

import logging
from typing import Any

from arq import cron

from shared import trash
from worker.jobs import runner

logger = logging.getLogger("app.worker.trash")

PURGE_JOB_NAME = "purge_trash"
COLLECT_JOB_NAME = "collect_attachment_files"
COLLECT_BATCH = 200
SELECT_GARBAGE = "SELECT storage_key FROM attachment_garbage ORDER BY queued_at LIMIT $1"
FORGET_GARBAGE = "DELETE FROM attachment_garbage WHERE storage_key = $1"


async def purge_trash(ctx: dict[str, Any]) -> int:
    purged = await trash.purge(ctx["db"].write)
    if purged:
        logger.info("trash purge: %s deleted tasks removed for good", purged)
    return purged


async def collect_attachment_files(ctx: dict[str, Any], batches: int = 10) -> int:
    pool, store = ctx["db"].write, runner.storage(ctx)
    removed = 0
    for _ in range(batches):
        rows = await pool.fetch(SELECT_GARBAGE, COLLECT_BATCH)
        for row in rows:
            await store.delete(row["storage_key"])
            await pool.execute(FORGET_GARBAGE, row["storage_key"])
        removed += len(rows)
        if len(rows) < COLLECT_BATCH:
            break
    if removed:
        logger.info("attachment files: %s removed", removed)
    return removed


CRON_JOBS = [
    cron(purge_trash, name=PURGE_JOB_NAME, minute=41, second=10, unique=True, timeout=600),
    cron(collect_attachment_files, name=COLLECT_JOB_NAME, second=25, unique=True, timeout=300),
]
