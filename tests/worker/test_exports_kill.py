"""A worker process SIGKILLed in the middle of an export: another worker finishes the job, once.

One file, one email, and the dead worker's half-written temp file is gone. The first test skips the
two waits a real deployment would sit through (the dead run's LEASE, and arq's in-progress key
outliving the job timeout) by moving the heartbeat back and deleting that key, as a clock would; the
second lets real time pass with two real worker processes and their cron sweeper.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from shared.db.database import Database
from shared.observability.heartbeats import live_workers
from worker.jobs.cleanup import sweep_jobs

from tests.export_helpers import (create_job, download, fetch_job, job_app, job_row, parse_csv, run_jobs, run_worker_until,
                            seed_many)
from tests.worker_helpers import job_ctx, start_worker_process

ROWS = 40_000
READY_AND_MAILED = """
SELECT j.status = 'succeeded' AND o.status = 'sent'
FROM jobs AS j JOIN email_outbox AS o ON o.dedup_key = 'job-ready:' || j.id
WHERE j.id = $1
"""


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


async def wait_until_mid_export(db: asyncpg.Connection, job_id: int, proc: subprocess.Popen[bytes],
                                log: Path) -> None:
    for _ in range(3000):
        assert proc.poll() is None, log.read_text()
        progress = await db.fetchval("SELECT progress FROM jobs WHERE id = $1 AND status = 'running'", job_id)
        if progress and progress > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker process never started the export:\n" + log.read_text())


def files_under(root: str) -> list[Path]:
    return sorted(path for path in Path(root).rglob("*") if path.is_file())


async def test_killed_mid_export_then_finished_once(client: Any, make_user: Any, db: asyncpg.Connection,
                                                    settings: Any, stack: Any, tmp_path: Path,
                                                    database: Database, arq_redis: ArqRedis) -> None:
    user = await make_user()
    await seed_many(db, user.id, ROWS)
    job = await create_job(client, user, format="csv")
    log = tmp_path / "worker.log"
    proc = start_worker_process(stack, settings, log)
    try:
        await wait_until_mid_export(db, job["id"], proc, log)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    killed = await job_row(db, job["id"])
    assert killed["status"] == "running" and 0 < killed["progress"] < 1, log.read_text()
    [partial] = files_under(settings.export_storage)
    assert partial.name.endswith(".part")  # half a file, never visible under its real name
    assert stack.smtp.messages() == []

    # LEASE passes without a heartbeat: the sweeper hands the job to another worker.
    await db.execute("UPDATE jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = $1", job["id"])
    assert await sweep_jobs(job_ctx(settings, database, redis=arq_redis)) == 1
    await run_worker_until(settings, db, READY_AND_MAILED, job["id"])
    # Much later arq's own retry of the original entry runs too (its in-progress key expired): a no-op.
    assert await arq_redis.delete(f"arq:in-progress:job:{job['id']}") == 1
    worker = await run_jobs(settings)
    assert worker.jobs_complete >= 1 and worker.jobs_failed == 0

    done = await job_row(db, job["id"])
    assert (done["status"], done["attempts"], done["row_count"], done["error"]) == ("succeeded", 2, ROWS, None)
    [final] = files_under(settings.export_storage)
    assert not final.name.endswith(".part") and final.stat().st_size == done["size_bytes"]
    rows = parse_csv(await download(client, user, await fetch_job(client, user, job)))
    assert len(rows) == ROWS and len({row["id"] for row in rows}) == ROWS
    [mail] = stack.smtp.messages()
    assert mail["To"] == user.email
    assert await db.fetchval("SELECT count(*) FROM email_outbox") == 1


async def wait_for_workers(redis: ArqRedis, count: int, procs: list[subprocess.Popen[bytes]]) -> dict[str, str]:
    for _ in range(600):
        assert all(proc.poll() is None for proc in procs)
        if len(alive := await live_workers(redis)) == count:
            return alive
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} live workers, have {await live_workers(redis)}")


async def test_a_killed_workers_job_is_finished_by_another_running_worker_within_30_s(
        client: Any, make_user: Any, db: asyncpg.Connection, settings: Any, stack: Any, tmp_path: Path,
        arq_redis: ArqRedis) -> None:
    user = await make_user()
    await seed_many(db, user.id, ROWS)
    await db.execute("UPDATE tasks SET due_at = NULL")  # with cron on, due tasks would mean reminder mails
    job = await create_job(client, user, format="csv")
    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    # Batches of 10 rows: the first worker's export lasts long enough for the second to start beside it.
    first = start_worker_process(stack, settings, log_a, WORKER_CRON="1", EXPORT_BATCH_ROWS="10")
    second = None
    try:
        await wait_until_mid_export(db, job["id"], first, log_a)
        second = start_worker_process(stack, settings, log_b, WORKER_CRON="1")
        await wait_for_workers(arq_redis, 2, [first, second])
        assert (await job_row(db, job["id"]))["status"] == "running", log_a.read_text()
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        killed_at, claimed_after = time.monotonic(), None
        while True:
            if claimed_after is None and await db.fetchval("SELECT attempts FROM jobs WHERE id = $1", job["id"]) > 1:
                claimed_after = time.monotonic() - killed_at
            if await db.fetchval(READY_AND_MAILED, job["id"]):
                break
            assert second.poll() is None, log_b.read_text()
            assert time.monotonic() - killed_at < 120, log_b.read_text()
            await asyncio.sleep(0.1)
        finished_after = time.monotonic() - killed_at
        print(f"SIGKILL recovery: claimed by the other worker after {claimed_after:.1f} s, "
              f"finished and mailed after {finished_after:.1f} s")
        # The lease (15 s) plus one sweeper tick (5 s) bound the takeover; the rest is the export itself.
        assert claimed_after is not None and claimed_after < 30, log_b.read_text()
        # The dead worker's heartbeat has expired by now; the live one is still listed.
        assert len(await live_workers(arq_redis)) == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)

    done = await job_row(db, job["id"])
    assert (done["status"], done["attempts"], done["row_count"]) == ("succeeded", 2, ROWS)
    [final] = files_under(settings.export_storage)
    assert final.stat().st_size == done["size_bytes"]
    assert len(stack.smtp.messages()) == 1 and await db.fetchval("SELECT count(*) FROM email_outbox") == 1
