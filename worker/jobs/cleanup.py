"""Cron jobs that keep the job table and the export storage honest.

- ``sweep_jobs``, the reconciler (at worker start and every SWEEP_EVERY seconds): the job row is the truth.
  Re-enqueue queued jobs whose queue entry was lost (the web process died after the commit, Redis was
  down, flushed or failed over to a replica that lacked the entry) and running jobs whose worker died (no
  heartbeat for LEASE). When Redis is new (another master, or emptied: shared/redis_client.RedisIdentity)
  every entry may be gone, so queued rows are taken after NEW_REDIS_GRACE instead of GRACE, and the
  outbox is swept at once too. A duplicate run is harmless: the claim lets one through.
- ``cleanup_exports`` (hourly): delete files past ``expires_at`` (downloads then answer 410), delete
  rows ROW_GRACE later (then 404), and delete temp files that no live run can still be writing.
"""
from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from shared import exports
from shared.observability import metrics
from shared.redis_client import RedisIdentity
from worker.jobs import runner
from worker.jobs.outbox import sweep_outbox
from worker.jobs.runner import LEASE

logger = logging.getLogger("app.worker.cleanup")

SWEEP_JOB_NAME = "sweep_jobs"
CLEANUP_JOB_NAME = "cleanup_exports"
# How long a fresh row may wait for its first run (enqueued right after the commit) before we step in.
# Rows whose arq entry is still queued are skipped anyway; this only covers lost enqueues (Redis was down).
GRACE = timedelta(seconds=20)
# After Redis was found new: only a row committed this recently may still have its first enqueue in flight.
NEW_REDIS_GRACE = timedelta(seconds=1)
SWEEP_BATCH = 200
# With runner.LEASE (15 s), a killed worker's job is re-enqueued at most ~20 s after its last beat.
# One indexed query per tick, run by one worker (unique cron).
SWEEP_EVERY = 5
CLEANUP_BATCH = 500
# Expired rows stay this long so a download says 410 Gone (expired) rather than 404.
ROW_GRACE = timedelta(days=7)
# Far longer than the job timeout: a temp file this old has no live writer.
PARTIAL_MAX_AGE = timedelta(hours=6)

SELECT_STUCK_JOBS = """
SELECT j.id, j.kind, j.status, j.enqueues
FROM jobs AS j
WHERE j.status IN ('queued', 'running')
  AND CASE WHEN j.status = 'queued' THEN j.created_at < now() - $1::interval
           ELSE j.heartbeat_at IS NULL OR j.heartbeat_at < now() - $2::interval END
ORDER BY j.created_at
LIMIT $3
"""
# Conditional on the count we read: two sweepers never enqueue the same row twice.
BUMP_ENQUEUES = "UPDATE jobs SET enqueues = enqueues + 1 WHERE id = $1 AND enqueues = $2 RETURNING enqueues"
SELECT_EXPIRED_FILES = """
SELECT j.id, j.storage_key FROM jobs AS j
WHERE j.expires_at <= now() AND j.storage_key IS NOT NULL
ORDER BY j.expires_at
LIMIT $1
"""
FORGET_FILE = "UPDATE jobs SET storage_key = NULL WHERE id = $1 AND storage_key = $2"
DELETE_OLD_JOBS = """
DELETE FROM jobs WHERE id = ANY (ARRAY(
    SELECT j.id FROM jobs AS j WHERE j.expires_at <= now() - $1::interval AND j.storage_key IS NULL LIMIT $2))
"""


async def sweep_jobs(ctx: dict[str, Any]) -> int:
    """Re-enqueue stuck jobs.

    :return: how many were enqueued
    """
    identity = ctx.setdefault("redis_identity", RedisIdentity())
    fresh = await identity.changed(ctx["redis"])
    if fresh:
        ctx["redis_new_at"] = time.monotonic()
    # For a whole GRACE after Redis was found new, not just once: a row made a moment before the loss is
    # inside NEW_REDIS_GRACE at the first sweep and would otherwise wait the full GRACE.
    recently_new = time.monotonic() - ctx.get("redis_new_at", -math.inf) < GRACE.total_seconds()
    try:
        enqueued = await _reenqueue(ctx, NEW_REDIS_GRACE if recently_new else GRACE)
    except BaseException:
        identity.seen = None  # not reconciled: the next sweep must treat Redis as new again
        raise
    if fresh:
        await sweep_outbox(ctx)
    return enqueued


async def _reenqueue(ctx: dict[str, Any], grace: timedelta) -> int:
    rows = await ctx["db"].write.fetch(SELECT_STUCK_JOBS, grace, LEASE, SWEEP_BATCH)
    enqueued = 0
    for row in rows:
        if await _still_in_queue(ctx["redis"], row):
            continue
        bumped = await ctx["db"].write.fetchval(BUMP_ENQUEUES, row["id"], row["enqueues"])
        if bumped is None:
            continue  # another sweeper took it
        job = await ctx["redis"].enqueue_job(exports.function_for(row["kind"]), row["id"],
                                             _job_id=exports.arq_job_id(row["id"], bumped))
        enqueued += job is not None
        if job is not None:
            metrics.JOBS_ENQUEUED.labels(row["kind"]).inc()
            metrics.JOBS_REENQUEUED.labels(row["kind"], "lost" if row["status"] == "queued" else "stale").inc()
    if rows:
        logger.info("job sweep: %s stuck jobs, %s re-enqueued", len(rows), enqueued)
    return enqueued


async def _still_in_queue(redis: ArqRedis, row: Any) -> bool:
    """True when the row's current arq entry will still run: no need for another.

    A 'running' row got here because its heartbeat stopped, so an arq entry "in progress" for it
    belongs to a dead worker (arq would only retry it after the whole job timeout).
    """
    status = await Job(exports.arq_job_id(row["id"], row["enqueues"]), redis).status()
    alive = {JobStatus.queued, JobStatus.deferred}
    if row["status"] == "queued":
        alive.add(JobStatus.in_progress)  # picked up a moment ago, not claimed yet
    return status in alive


async def cleanup_exports(ctx: dict[str, Any]) -> dict[str, int]:
    """Delete expired files, old rows and abandoned temp files; safe to run concurrently and repeatedly."""
    pool, store = ctx["db"].write, runner.storage(ctx)
    files = 0
    for row in await pool.fetch(SELECT_EXPIRED_FILES, CLEANUP_BATCH):
        await store.delete(row["storage_key"])
        await pool.execute(FORGET_FILE, row["id"], row["storage_key"])
        files += 1
    status = await pool.execute(DELETE_OLD_JOBS, ROW_GRACE, CLEANUP_BATCH)
    partials = await store.discard_partials("jobs/", older_than=PARTIAL_MAX_AGE.total_seconds())
    result = {"files": files, "rows": int(status.split()[-1]), "partials": partials}
    if any(result.values()):
        logger.info("export cleanup: %(files)s files, %(rows)s rows, %(partials)s temp files deleted", result)
    return result


CRON_JOBS = [
    # unique=True: one run per tick however many workers there are. Offset from the outbox sweep (:00).
    cron(sweep_jobs, name=SWEEP_JOB_NAME, second=set(range(2, 60, SWEEP_EVERY)), unique=True, timeout=60),
    cron(cleanup_exports, name=CLEANUP_JOB_NAME, minute=17, second=0, unique=True, timeout=600),
]
