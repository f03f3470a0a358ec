"""The life of a job row in the worker: claim, heartbeat, finish once, retry on purpose.

At-least-once delivery, exactly-once results:

- The claim is one conditional UPDATE that bumps ``attempts``; that number is the run's token. Only
  the run holding the latest claim can report progress or finish, so of two runs of one job (a
  duplicate enqueue, the sweeper, arq re-running a job after a SIGKILL) exactly one produces the
  result and the email.
- A live run beats every HEARTBEAT seconds. A run whose worker died stops beating; after LEASE its
  job can be claimed again (arq re-runs it once its in-progress key expires; the sweeper sooner).
- The file's storage key is fixed per job and written via temp name + rename, so a re-run replaces
  rather than adds a file; the ready email has a dedup key, so it is queued once.
- Transient errors (database, storage, Redis) release the claim and ``raise Retry`` with BACKOFF;
  anything else fails the job with a message a user can read; details go to the log, which carries
  the request id of the request that created the job.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable

import asyncpg
from arq import Retry
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError
from redis.exceptions import RedisError

from shared import exports
from shared.observability import metrics
from shared.config import Settings
from shared.db import failover
from shared.observability.logs import request_id_var
from shared.mail.outbox import dispatch, queue_email
from shared.storage import Storage, storage_from_settings

logger = logging.getLogger("app.worker.jobs")

HEARTBEAT = 3.0  # seconds between beats of a live run
# A run silent this long is dead: its job may be claimed again. Five missed beats: a slow database
# or a busy machine does not trigger a takeover (and if it does, the claim token keeps it harmless),
# while a SIGKILLed worker's job is picked up within LEASE + the sweeper's interval (cleanup.py).
LEASE = timedelta(seconds=15)
# Seconds to wait after the 1st, 2nd... transient failure; after the last one the job is 'failed'.
BACKOFF = (5, 30, 120, 600)
MAX_ATTEMPTS = len(BACKOFF) + 1
# arq counts SIGKILLed runs too; our own `attempts` decides, so arq's limit only needs to be out of the way.
ARQ_MAX_TRIES = MAX_ATTEMPTS + 3
JOB_TIMEOUT = 900  # seconds; arq cancels a run after this (the PDF row cap keeps real runs far below)
ERROR_MAX_CHARS = 500

CLAIM_JOB = """
UPDATE jobs
SET status = 'running', attempts = attempts + 1, started_at = now(), heartbeat_at = now(), progress = 0,
    error = NULL
WHERE id = $1 AND (status = 'queued' OR (status = 'running' AND heartbeat_at < now() - $2::interval))
RETURNING id, owner_id, kind, format, params, attempts, request_id, created_at
"""
HEARTBEAT_JOB = """
UPDATE jobs SET heartbeat_at = now(), progress = $3
WHERE id = $1 AND attempts = $2 AND status = 'running'
"""
# The owner's address comes back with the result, for the ready email (sent only to active accounts).
FINISH_JOB = """
WITH done AS (
    UPDATE jobs
    SET status = 'succeeded', progress = 1, row_count = $3, size_bytes = $4, storage_key = $5,
        finished_at = now(), expires_at = now() + $6::interval, heartbeat_at = NULL
    WHERE id = $1 AND attempts = $2 AND status = 'running'
    RETURNING id, owner_id, kind, format, row_count, created_at, expires_at
)
SELECT done.*, u.email, u.name, u.is_active FROM done JOIN users AS u ON u.id = done.owner_id
"""
RELEASE_JOB = """
UPDATE jobs SET status = 'queued', heartbeat_at = NULL, progress = 0, error = $3
WHERE id = $1 AND attempts = $2 AND status = 'running'
"""
FAIL_JOB = """
UPDATE jobs
SET status = 'failed', error = $3, finished_at = now(), expires_at = now() + $4::interval, heartbeat_at = NULL
WHERE id = $1 AND attempts = $2 AND status = 'running'
"""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, RedisError, BotoConnectionError, HTTPClientError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.InsufficientResourcesError, asyncpg.OperatorInterventionError, asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


def is_transient(exc: BaseException) -> bool:
    """A transient error, or one raised while handling one.

    When PostgreSQL drops a connection mid-transaction, asyncpg's rollback on the way out raises
    InternalClientError ("another operation is in progress") with the ConnectionDoesNotExistError as
    its context: the cause, not the last symptom, decides.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        # The database's failures are named in one place (shared/db/failover.py), the web tier's too.
        if isinstance(current, TRANSIENT_ERRORS) or failover.classify(current) is not None:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class JobFailed(Exception):
    """A permanent failure; the message is shown to the user as the job's ``error``."""


class ClaimLost(Exception):
    """Another run claimed this job (ours was presumed dead): stop without touching the result."""


@dataclass(frozen=True)
class Output:
    storage_key: str
    row_count: int | None
    size_bytes: int


class JobRun:
    """One claimed run: its job row, its claim token, and progress reporting."""

    def __init__(self, pool: asyncpg.Pool, job: asyncpg.Record) -> None:
        self.pool, self.job, self.attempt = pool, job, int(job["attempts"])
        # Plain float: a rendering thread may set it; the heartbeat writes it out.
        self.progress = 0.0

    async def report(self, progress: float) -> None:
        """Record progress now (callers do this every N rows, never per row)."""
        self.progress = min(max(progress, 0.0), 1.0)
        await self._beat()

    async def _beat(self) -> None:
        status = await self.pool.execute(HEARTBEAT_JOB, self.job["id"], self.attempt, self.progress)
        if status == "UPDATE 0":
            raise ClaimLost(f"job {self.job['id']} was claimed by another run")

    async def heartbeat(self) -> None:
        """Beat until cancelled; returns only when the claim is lost. A failed beat is retried next time."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._beat()
            except ClaimLost:
                return
            except TRANSIENT_ERRORS:
                logger.warning("job %s: heartbeat failed; retrying", self.job["id"], exc_info=True)


Work = Callable[[dict[str, Any], JobRun], Awaitable[Output]]


def storage(ctx: dict[str, Any]) -> Storage:
    """The worker's storage backend: opened and checked by worker startup; made here for a bare ctx (tests)."""
    if "storage" not in ctx:
        ctx["storage"] = storage_from_settings(ctx["settings"])
    return ctx["storage"]


async def execute(ctx: dict[str, Any], job_id: int, work: Work) -> str:
    """Claim job ``job_id`` and run ``work`` for it, unless it is finished or another live run has it.

    :return: 'succeeded', 'failed', 'skipped' (nothing to claim) or 'lost' (claim taken over)
    :raises arq.Retry: after a transient failure, with the job back to 'queued'
    """
    pool: asyncpg.Pool = ctx["db"].write
    job = await pool.fetchrow(CLAIM_JOB, job_id, LEASE)
    if job is None:
        logger.info("job %s: nothing to do (finished, unknown, or running elsewhere)", job_id)
        return "skipped"
    token = request_id_var.set(job["request_id"] or "-")
    try:
        return await _run(ctx, pool, JobRun(pool, job), work)
    finally:
        request_id_var.reset(token)


async def _run(ctx: dict[str, Any], pool: asyncpg.Pool, run: JobRun, work: Work) -> str:
    job, started = run.job, time.monotonic()
    if run.attempt > MAX_ATTEMPTS:  # claimed again and again after crashes: stop trying
        _count(job["kind"], "failed", 0.0)
        return await _fail(pool, run, f"Gave up after {MAX_ATTEMPTS} attempts; please try again later")
    logger.info("job %s (%s %s) started, attempt %s", job["id"], job["kind"], job["format"], run.attempt)
    metrics.JOBS_STARTED.labels(job["kind"]).inc()
    outcome = "cancelled"
    try:
        try:
            output = await _with_heartbeat(ctx, run, work)
        except ClaimLost:
            logger.warning("job %s: claim lost to another run; stopping", job["id"])
            outcome = "lost"
            return outcome
        except asyncio.CancelledError:
            # Worker shutdown or arq's timeout: hand the job back so a later run (arq's or the sweeper's) takes it.
            await _quietly(pool.execute(RELEASE_JOB, job["id"], run.attempt, None))
            raise
        except Exception as exc:  # noqa: BLE001 - every outcome is recorded on the row
            outcome = "retried"  # _failed_run raises Retry, or returns "failed" when it gives up
            outcome = await _failed_run(pool, run, exc, time.monotonic() - started)
            return outcome
        outcome = await _succeed(ctx, pool, run, output, time.monotonic() - started)
        return outcome
    finally:
        _count(job["kind"], outcome, time.monotonic() - started)


async def _with_heartbeat(ctx: dict[str, Any], run: JobRun, work: Work) -> Output:
    work_task = asyncio.ensure_future(work(ctx, run))
    beat_task = asyncio.ensure_future(run.heartbeat())
    try:
        await asyncio.wait({work_task, beat_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        beat_task.cancel()
        if not work_task.done():
            work_task.cancel()
        await asyncio.gather(work_task, beat_task, return_exceptions=True)
    if work_task.cancelled():  # the heartbeat ended first: the claim was lost
        raise ClaimLost(f"job {run.job['id']} was claimed by another run")
    return work_task.result()


async def _succeed(ctx: dict[str, Any], pool: asyncpg.Pool, run: JobRun, output: Output, seconds: float) -> str:
    settings: Settings = ctx["settings"]
    outbox_id = None
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchrow(FINISH_JOB, run.job["id"], run.attempt, output.row_count, output.size_bytes,
                                   output.storage_key, exports.RETENTION)
        if done is None:
            logger.warning("job %s: finished, but another run holds the claim; leaving the result to it",
                           run.job["id"])
            return "lost"
        if done["is_active"]:
            outbox_id = await queue_email(conn, to=done["email"], template="export_ready", user_id=done["owner_id"],
                                          context=ready_mail_context(settings, done),
                                          dedup_key=f"job-ready:{done['id']}")
    await dispatch(ctx["redis"], [outbox_id])
    logger.info("job %s (%s %s) succeeded in %.2fs: %s rows, %s bytes", run.job["id"], run.job["kind"],
                run.job["format"], seconds, output.row_count, output.size_bytes)
    return "succeeded"


def ready_mail_context(settings: Settings, job: asyncpg.Record) -> dict[str, Any]:
    what = {"export": f"{job['format'].upper()} export of your tasks", "summary": "summary report",
            "admin_activity": "admin activity report"}[job["kind"]]
    return {
        "name": job["name"], "what": what, "row_count": job["row_count"],
        # The page lists the file with a download link that works with the browser session (sign-in first).
        "link": f"{settings.public_url}/exports#job-{job['id']}",
        "download_url": f"{settings.public_url}{exports.resource_path(job)}/download",
        "expires_at": f"{job['expires_at']:%Y-%m-%d %H:%M} UTC",
    }


async def _failed_run(pool: asyncpg.Pool, run: JobRun, exc: Exception, seconds: float) -> str:
    job_id = run.job["id"]
    if isinstance(exc, JobFailed):
        logger.warning("job %s failed after %.2fs: %s", job_id, seconds, exc)
        return await _fail(pool, run, str(exc))
    if not is_transient(exc):
        logger.exception("job %s failed permanently after %.2fs", job_id, seconds, exc_info=exc)
        reference = request_id_var.get()
        return await _fail(pool, run, f"An unexpected error stopped this job (reference {reference}).")
    if run.attempt >= MAX_ATTEMPTS:
        logger.error("job %s: attempt %s failed (%s); giving up", job_id, run.attempt, _describe(exc))
        return await _fail(pool, run, f"A temporary problem persisted; gave up after {run.attempt} attempts.")
    delay = BACKOFF[run.attempt - 1]
    logger.warning("job %s: attempt %s failed after %.2fs (%s), retrying in %ss", job_id, run.attempt, seconds,
                   _describe(exc), delay)
    await pool.execute(RELEASE_JOB, job_id, run.attempt, None)
    raise Retry(defer=delay) from exc


def _count(kind: str, outcome: str, seconds: float) -> None:
    counter = {"succeeded": metrics.JOBS_SUCCEEDED, "failed": metrics.JOBS_FAILED,
               "retried": metrics.JOBS_RETRIED}.get(outcome)
    if counter is not None:
        counter.labels(kind).inc()
    metrics.JOB_DURATION.labels(kind, outcome).observe(seconds)


async def _fail(pool: asyncpg.Pool, run: JobRun, error: str) -> str:
    await pool.execute(FAIL_JOB, run.job["id"], run.attempt, error[:ERROR_MAX_CHARS], exports.RETENTION)
    logger.error("job %s marked failed: %s", run.job["id"], error)
    return "failed"


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - best effort while shutting down; the lease covers the rest
        logger.warning("could not release a job claim", exc_info=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]
