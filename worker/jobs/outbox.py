"""Outbox sweeper (cron, every minute): re-enqueue mails whose send job was lost. Outbox retention
(cron, every five minutes): scrub credentials the sweeper can no longer send, purge old rows.

A job is lost when Redis was down at enqueue time, the queue was flushed, arq gave up retrying, or a
worker died holding the claim. The row in PostgreSQL is the durable record; this puts it back in arq.
Duplicates it may create are harmless: send_email's claim lets exactly one of them send.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis

from shared import jobs
from shared.config import Settings
from shared.mail.outbox import SECRET_KEYS
from worker.jobs.email import BACKOFF, LEASE

logger = logging.getLogger("app.worker.outbox")

SWEEP_JOB_NAME = "sweep_outbox"
RETENTION_JOB_NAME = "outbox_retention"
# How long a fresh row may wait for its first job (enqueued right after the commit) before we step in.
GRACE = timedelta(seconds=60)
SWEEP_BATCH = 500

# A pending row is stuck once its retry (BACKOFF after its last attempt, as send_email scheduled it) is
# overdue by GRACE; a 'sending' row once its claim outlived LEASE (the worker died mid-send).
# `created_at` first, so the partial index email_outbox_unsent_idx does the work.
SELECT_STUCK_EMAILS = """
SELECT id, attempts
FROM email_outbox
WHERE status IN ('pending', 'sending')
  AND created_at < now() - $1::interval
  AND CASE
        WHEN status = 'sending' THEN claimed_at < now() - $2::interval
        WHEN attempts = 0 THEN true
        ELSE claimed_at < now() - $1::interval
                                - ($3::int[])[LEAST(attempts, cardinality($3::int[]))] * interval '1 second'
      END
ORDER BY created_at
LIMIT $4
"""


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Re-enqueue stuck outbox rows.

    :return: how many send jobs were enqueued (ids already queued are not counted)
    """
    settings: Settings = ctx["settings"]
    rows = await ctx["db"].write.fetch(SELECT_STUCK_EMAILS, GRACE, LEASE, list(BACKOFF), SWEEP_BATCH)
    if rows and settings.smtp is None:
        # Enqueueing would only make send_email warn once per row per minute; one line says it all.
        logger.warning("SMTP_URL is not set: %s%s emails are waiting in the outbox",
                       len(rows), "+" if len(rows) == SWEEP_BATCH else "")
        return 0
    enqueued = 0
    for row in rows:
        enqueued += await _enqueue(ctx["redis"], row["id"], row["attempts"])
    if rows:
        logger.info("outbox sweep: %s stuck emails, %s re-enqueued", len(rows), enqueued)
    return enqueued


async def _enqueue(redis: ArqRedis, outbox_id: int, attempts: int) -> int:
    # Not the web tier's f"email:{id}": arq keeps that job's result for keep_result and would drop
    # the enqueue as a duplicate. `attempts` grows with every claim, so each new try gets a fresh id,
    # while sweeping the same unchanged row again dedups against the job already queued.
    job = await redis.enqueue_job(jobs.SEND_EMAIL, outbox_id, _job_id=f"email:{outbox_id}:{attempts}")
    return 0 if job is None else 1


# An unsent mail whose token has expired would only deliver a dead link: fail it, and drop the token.
EXPIRE_UNSENT_SECRETS = """
UPDATE email_outbox
SET status = 'failed', context = context - $1::text[], last_error = 'its one-time token expired before it was sent'
WHERE secrets_expire_at < now() AND status IN ('pending', 'sending')
"""
PURGE_FINISHED = """
DELETE FROM email_outbox WHERE id = ANY (ARRAY(
    SELECT o.id FROM email_outbox AS o
    WHERE o.status IN ('sent', 'failed') AND o.created_at < now() - $1::interval LIMIT $2))
"""
PURGE_BATCH = 5000


async def outbox_retention(ctx: dict[str, Any]) -> dict[str, int]:
    """Scrub expired credentials from unsent rows; delete sent and failed rows older than OUTBOX_RETENTION_DAYS.

    Idempotent, safe to run concurrently; a purge larger than PURGE_BATCH finishes on later runs.
    """
    settings: Settings = ctx["settings"]
    pool = ctx["db"].write
    expired = await pool.execute(EXPIRE_UNSENT_SECRETS, SECRET_KEYS)
    purged = await pool.execute(PURGE_FINISHED, timedelta(days=settings.outbox_retention_days), PURGE_BATCH)
    result = {"expired": int(expired.split()[-1]), "purged": int(purged.split()[-1])}
    if any(result.values()):
        logger.info("outbox retention: %(expired)s unsent mails expired, %(purged)s old rows deleted", result)
    return result
