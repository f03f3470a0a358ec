"""The job runner's guarantees: one result per job, bounded retries, readable failures, traceable logs."""
from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from shared.db.database import Database
from shared.observability.logs import RequestIdFilter
from worker.jobs import runner
from worker.jobs.exports import run_export
from worker.jobs.runner import MAX_ATTEMPTS, ClaimLost, JobRun

from tests.export_helpers import create_job, job_app, job_row, seed_many
from tests.worker_helpers import job_ctx


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


async def test_concurrent_runs_of_one_job_produce_one_result(client: Any, make_user: Any, db: asyncpg.Connection,
                                                             settings: Any, database: Database,
                                                             arq_redis: ArqRedis) -> None:
    user = await make_user()
    await seed_many(db, user.id, 3000)
    job = await create_job(client, user, format="csv")
    ctx = job_ctx(settings, database, redis=arq_redis)

    results = await asyncio.gather(*(run_export(ctx, job["id"]) for _ in range(4)))

    assert sorted(results) == ["skipped"] * 3 + ["succeeded"]
    assert len([p for p in Path(settings.export_storage).rglob("*") if p.is_file()]) == 1
    assert await db.fetchval("SELECT count(*) FROM email_outbox") == 1
    assert (await job_row(db, job["id"]))["attempts"] == 1


async def test_a_run_that_lost_its_claim_cannot_report_or_finish(client: Any, make_user: Any,
                                                                 db: asyncpg.Connection, database: Database) -> None:
    user = await make_user()
    job = await create_job(client, user, format="csv")
    claimed = await database.write.fetchrow(runner.CLAIM_JOB, job["id"], runner.LEASE)
    run = JobRun(database.write, claimed)
    await run.report(0.25)
    # Another worker decided this run was dead and claimed the job.
    await db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = $1", job["id"])

    with pytest.raises(ClaimLost):
        await run.report(0.5)
    finished = await database.write.fetchrow(runner.FINISH_JOB, job["id"], run.attempt, 1, 1, "k", timedelta(days=1))
    assert finished is None
    assert (await job_row(db, job["id"]))["progress"] == 0.25


async def test_a_job_that_keeps_crashing_its_worker_fails_after_max_attempts(
        client: Any, make_user: Any, db: asyncpg.Connection, settings: Any, database: Database) -> None:
    user = await make_user()
    job = await create_job(client, user, format="csv")
    await db.execute("UPDATE jobs SET status = 'running', attempts = $2, heartbeat_at = now() - interval '1 hour' "
                     "WHERE id = $1", job["id"], MAX_ATTEMPTS)

    assert await run_export(job_ctx(settings, database), job["id"]) == "failed"

    row = await job_row(db, job["id"])
    assert row["status"] == "failed" and row["error"].startswith(f"Gave up after {MAX_ATTEMPTS} attempts")
    assert row["expires_at"] is not None  # cleaned up like any finished job


async def test_a_live_run_is_not_taken_over(client: Any, make_user: Any, db: asyncpg.Connection, settings: Any,
                                            database: Database) -> None:
    user = await make_user()
    job = await create_job(client, user, format="csv")
    await db.execute("UPDATE jobs SET status = 'running', attempts = 1, heartbeat_at = now() WHERE id = $1",
                     job["id"])
    assert await run_export(job_ctx(settings, database), job["id"]) == "skipped"


async def test_unexpected_errors_fail_readably_and_log_the_request_id(
        client: Any, make_user: Any, db: asyncpg.Connection, settings: Any, database: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    user = await make_user()
    response = await client.post("/api/v1/exports", json={"format": "csv"},
                                 headers={**user.headers, "X-Request-ID": "req-export-7"})
    job = await response.json()
    # A row no current code would write (e.g. from a future version): a bug, not a transient error.
    await db.execute("UPDATE jobs SET params = $2::jsonb WHERE id = $1", job["id"], json.dumps({"sort": "bogus"}))
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.INFO, logger="app.worker"):
        assert await run_export(job_ctx(settings, database), job["id"]) == "failed"

    row = await job_row(db, job["id"])
    assert row["error"] == "An unexpected error stopped this job (reference req-export-7)."
    assert "KeyError" not in row["error"] and row["attempts"] == 1
    failure = [r for r in caplog.records if "failed permanently" in r.getMessage()]
    assert failure and getattr(failure[0], "request_id") == "req-export-7" and failure[0].exc_info


async def test_cancellation_hands_the_job_back(client: Any, make_user: Any, db: asyncpg.Connection,
                                               settings: Any, database: Database) -> None:
    user = await make_user()
    job = await create_job(client, user, format="pdf")
    holder = await asyncpg.connect(settings.database_url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")  # hold the export at its first read
            task = asyncio.ensure_future(run_export(job_ctx(settings, database), job["id"]))
            for _ in range(200):
                if (await job_row(db, job["id"]))["status"] == "running":
                    break
                await asyncio.sleep(0.01)
            task.cancel()  # what arq does on shutdown or timeout
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        await holder.close()
    await asyncio.sleep(0.1)

    row = await job_row(db, job["id"])
    assert (row["status"], row["attempts"], row["error"], row["heartbeat_at"]) == ("queued", 1, None, None)
