"""Jobs as resources: exports and reports that users create, poll and download.

The web tier inserts the row and enqueues after the commit (``enqueue``). If it dies in between, or
Redis is down, the row is still there and the worker's sweeper (``worker.jobs.cleanup.sweep_jobs``)
enqueues it: the row is the outbox. Every read goes through ``get_job_for_user``, the one owner
check: someone else's job is a 404, exactly like a missing one; an admin sees every job.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from shared.observability import metrics
from shared.errors import Conflict, Gone, NotFound, RateLimited, ValidationFailed
from shared.observability.logs import request_id_var
from shared.db.pagination import decode_cursor, page

logger = logging.getLogger("app.exports")

EXPORT = "export"
REPORT_KINDS = ("summary", "admin_activity")
FORMATS = ("csv", "pdf")
STATUSES = ("queued", "running", "succeeded", "failed")
# arq function names, shared by the enqueuing web tier and the worker (move to shared/jobs.py when wired).
RUN_EXPORT = "run_export"
RUN_REPORT = "run_report"
# How long a finished file can be downloaded; after that the download is 410 and the file is deleted.
RETENTION = timedelta(days=7)
MAX_ID = 2**63 - 1
EXPORT_PATH = "/api/v1/exports/{id}"
REPORT_PATH = "/api/v1/reports/{id}"
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}

JOB_COLUMNS = ("j.id, j.owner_id, j.kind, j.format, j.params, j.status, j.progress, j.row_count, j.size_bytes, "
               "j.error, j.storage_key, j.created_at, j.finished_at, j.expires_at")
INSERT_JOB = f"""
INSERT INTO jobs AS j (owner_id, kind, format, params, request_id)
VALUES ($1, $2, $3, $4, $5)
RETURNING {JOB_COLUMNS}
"""
# The single owner check: $3 (is admin) lets an admin see every job; $4 the kinds the URL serves.
SELECT_JOB_FOR_USER = f"""
SELECT {JOB_COLUMNS} FROM jobs AS j
WHERE j.id = $1 AND ($3 OR (j.owner_id = $2 AND j.kind <> ALL($5::text[]))) AND j.kind = ANY($4::text[])
"""
# Kinds only admins may see, whoever queued them: a requester who has since lost the role gets a 404.
ADMIN_ONLY_KINDS = ("admin_activity",)
SELECT_JOB_PAGE = f"""
SELECT {JOB_COLUMNS} FROM jobs AS j
WHERE j.owner_id = $1 AND ($2::bigint IS NULL OR j.id < $2)
ORDER BY j.id DESC
LIMIT $3
"""
# The owner's row lock serialises concurrent job requests of one user, so the cap cannot be raced past.
LOCK_OWNER = "SELECT id FROM users WHERE id = $1 FOR UPDATE"
COUNT_ACTIVE_JOBS = "SELECT count(*) FROM jobs AS j WHERE j.owner_id = $1 AND j.status IN ('queued', 'running')"
ACTIVE_RETRY_AFTER = 10
SELECT_JOB_COUNTS = "SELECT j.status, count(*) AS n FROM jobs AS j GROUP BY j.status"


def function_for(kind: str) -> str:
    return RUN_EXPORT if kind == EXPORT else RUN_REPORT


def arq_job_id(job_id: int, enqueues: int = 0) -> str:
    """The arq job id of a job row's current queue entry: arq refuses a second entry with the same id.

    The sweeper's re-enqueues get a new suffix, because arq keeps a finished entry's id for
    ``keep_result`` seconds and would drop the re-enqueue as a duplicate.
    """
    return f"job:{job_id}" if enqueues == 0 else f"job:{job_id}:{enqueues}"


async def create_job(conn: asyncpg.Connection, *, owner_id: int, kind: str, format: str,
                     params: dict[str, Any], max_active: int | None = None) -> asyncpg.Record:
    """Insert a queued job inside the caller's transaction; call ``enqueue`` after the commit.

    :param params: export filters (``shared.task_export.filters_to_params``) or a report's from/to.
    :param max_active: refuse (429) when the owner already has this many jobs queued or running.
    """
    if max_active is not None:
        await conn.fetchval(LOCK_OWNER, owner_id)
        active = await conn.fetchval(COUNT_ACTIVE_JOBS, owner_id)
        if active >= max_active:
            raise RateLimited(f"You already have {active} exports or reports queued or running (at most "
                              f"{max_active}); wait for one to finish", headers={"Retry-After": str(ACTIVE_RETRY_AFTER)})
    request_id = request_id_var.get()
    return await conn.fetchrow(INSERT_JOB, owner_id, kind, format, params, None if request_id == "-" else request_id)


async def enqueue(arq: ArqRedis, job: asyncpg.Record | dict[str, Any]) -> None:
    """Hand a committed job to the workers. If Redis is down the row stays queued; the sweeper enqueues it."""
    try:
        await arq.enqueue_job(function_for(job["kind"]), job["id"], _job_id=arq_job_id(job["id"]))
        metrics.JOBS_ENQUEUED.labels(job["kind"]).inc()
    except Exception:  # noqa: BLE001 - the job row is the durable record; the sweeper retries
        logger.warning("could not enqueue job %s; the job sweeper will", job["id"], exc_info=True)


async def get_job_for_user(conn: asyncpg.Connection, *, job_id: int, user_id: int, is_admin: bool,
                           kinds: tuple[str, ...]) -> asyncpg.Record:
    """The job if ``user_id`` owns it or is an admin and it is of one of ``kinds``; otherwise NotFound.

    :param kinds: ``(EXPORT,)`` under /exports, ``REPORT_KINDS`` under /reports: a job of the other
        kind is as absent as a missing one (its own URL is the one in ``Location``).
    """
    if not 1 <= job_id <= MAX_ID:
        raise NotFound("No such job")
    job = await conn.fetchrow(SELECT_JOB_FOR_USER, job_id, user_id, is_admin, list(kinds), list(ADMIN_ONLY_KINDS))
    if job is None:
        raise NotFound("No such job")
    return job


async def list_jobs(conn: asyncpg.Connection, *, owner_id: int, limit: int, cursor: str | None,
                    secret: str) -> tuple[list[asyncpg.Record], str | None]:
    """One page of the owner's jobs (exports and reports), newest first, and the next page's cursor."""
    scope = f"jobs:{owner_id}"
    after = None
    if cursor:
        values = decode_cursor(secret, scope, cursor)
        if len(values) != 1 or type(values[0]) is not int:  # a valid MAC does not excuse bad data
            raise ValidationFailed({"cursor": ["Invalid cursor; use the next_cursor of a previous page"]})
        after = values[0]
    rows = await conn.fetch(SELECT_JOB_PAGE, owner_id, after, limit + 1)
    return page(rows, limit, lambda row: [row["id"]], secret, scope)


def resource_path(job: asyncpg.Record | dict[str, Any]) -> str:
    return (EXPORT_PATH if job["kind"] == EXPORT else REPORT_PATH).format(id=job["id"])


def is_expired(job: asyncpg.Record | dict[str, Any], now: datetime | None = None) -> bool:
    expires_at = job["expires_at"]
    return expires_at is not None and expires_at <= (now or datetime.now(timezone.utc))


def job_out(job: asyncpg.Record | dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The contract's Job. ``download_url`` is set only while the file can be downloaded."""
    ready = job["status"] == "succeeded" and job["storage_key"] is not None and not is_expired(job, now)
    return {
        "id": job["id"], "kind": job["kind"], "format": job["format"], "status": job["status"],
        "progress": round(float(job["progress"]), 3), "row_count": job["row_count"],
        "size_bytes": job["size_bytes"], "error": job["error"], "created_at": job["created_at"],
        "finished_at": job["finished_at"], "expires_at": job["expires_at"],
        "download_url": resource_path(job) + "/download" if ready else None,
    }


def check_downloadable(job: asyncpg.Record | dict[str, Any], now: datetime | None = None) -> str:
    """The storage key of a job's file; Conflict (409) while not ready, Gone (410) once expired."""
    if job["status"] in ("queued", "running"):
        raise Conflict(f"The {_noun(job)} is not ready yet (status {job['status']}, "
                       f"{round(float(job['progress']) * 100)}% done); poll {resource_path(job)}",
                       headers={"Retry-After": "2"})
    if job["status"] == "failed":
        raise Conflict(f"The {_noun(job)} failed and has no file: {job['error']}")
    if is_expired(job, now) or job["storage_key"] is None:
        raise Gone(f"The {_noun(job)} expired on {job['expires_at']:%Y-%m-%d %H:%M} UTC; request a new one")
    return str(job["storage_key"])


def _noun(job: asyncpg.Record | dict[str, Any]) -> str:
    return "export" if job["kind"] == EXPORT else "report"


def storage_key(job: asyncpg.Record | dict[str, Any]) -> str:
    """Fixed per job: a re-run after a crash overwrites the same key, so there is never a second file."""
    return f"jobs/{job['id']}/{download_name(job)}"


def download_name(job: asyncpg.Record | dict[str, Any]) -> str:
    """A file name people recognise in their downloads folder, e.g. ``taskdeck-tasks-2026-11-22-42.csv``."""
    what = "tasks" if job["kind"] == EXPORT else job["kind"].replace("_", "-")
    return f"taskdeck-{what}-{job['created_at']:%Y-%m-%d}-{job['id']}.{job['format']}"


def media_type(job: asyncpg.Record | dict[str, Any]) -> str:
    return MEDIA_TYPES[job["format"]]


async def job_counts_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    """Every job counted by status, zeros included (for /api/v1/admin/stats)."""
    counts = {status: 0 for status in STATUSES}
    for row in await conn.fetch(SELECT_JOB_COUNTS):
        counts[row["status"]] = row["n"]
    return counts
