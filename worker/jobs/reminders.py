"""Due-soon reminders (cron): one mail per task per due time, however many workers run the cron.

The guarantee is the outbox's unique ``dedup_key`` (``task-due:<task id>:<due time>``), not the
scheduler: arq's ``unique=True`` only stops two workers enqueueing the same tick. Two runs at once
(or a run repeated after a crash) insert the same keys, and PostgreSQL keeps the first: ON CONFLICT
DO NOTHING waits for the other transaction and then skips. A task whose due time moves gets a new
key, so it is reminded again for the new time.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq import cron

from shared.config import Settings
from shared.mail.outbox import dispatch

logger = logging.getLogger("app.worker.reminders")

REMIND_JOB_NAME = "remind_due_soon"
WINDOW = timedelta(hours=24)
BATCH = 1000  # mails queued per statement; a run loops until the window is drained
MAX_BATCHES = 50  # bounds one run; the next tick continues

# Set-based: one statement finds the tasks and writes their mails. Soonest first, so a capped run
# reminds the most urgent tasks. Uses tasks_due_open_idx (0006_jobs.sql).
QUEUE_REMINDERS = """
INSERT INTO email_outbox (user_id, to_address, template, context, dedup_key)
SELECT u.id, u.email, 'task_due_soon',
       jsonb_build_object('name', u.name, 'title', t.title,
                          'due_at', to_char(t.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
                          'link', $2 || '/tasks/' || t.id),
       'task-due:' || t.id || ':' || floor(extract(epoch FROM t.due_at))::bigint
FROM tasks AS t
JOIN users AS u ON u.id = t.owner_id
WHERE t.due_at > now() AND t.due_at <= now() + $1::interval
  AND t.status <> 'done' AND u.is_active AND u.email_verified
  AND NOT EXISTS (SELECT 1 FROM email_outbox AS o
                  WHERE o.dedup_key = 'task-due:' || t.id || ':' || floor(extract(epoch FROM t.due_at))::bigint)
ORDER BY t.due_at
LIMIT $3
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""


async def remind_due_soon(ctx: dict[str, Any]) -> int:
    """Queue a reminder for every open task due in the next 24 hours that has none for its due time.

    :return: how many reminders were queued by this run
    """
    settings: Settings = ctx["settings"]
    queued = 0
    for _ in range(MAX_BATCHES):
        rows = await ctx["db"].write.fetch(QUEUE_REMINDERS, WINDOW, settings.public_url, BATCH)
        await dispatch(ctx["redis"], [row["id"] for row in rows])
        queued += len(rows)
        if len(rows) < BATCH:
            break
    if queued:
        logger.info("queued %s due-soon reminders", queued)
    return queued


CRON_JOBS = [
    cron(remind_due_soon, name=REMIND_JOB_NAME, minute=set(range(0, 60, 5)), second=15, unique=True, timeout=300),
]
