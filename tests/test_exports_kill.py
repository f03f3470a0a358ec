"""A worker process SIGKILLed in the middle of an export: another worker finishes the job, once.

One file, one email, and the dead worker's half-written temp file is gone. The two waits a real
deployment would sit through (the dead run's LEASE, and arq's in-progress key outliving the job
timeout) are skipped by moving the heartbeat back and deleting that key, as a clock would.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis

from shared.db import Database
from tests.conftest import TEST_SECRET
from worker.jobs.cleanup import sweep_jobs

from export_helpers import (create_job, download, fetch_job, job_app, job_row, parse_csv, run_jobs, run_worker_until,
                            seed_many)
from worker_helpers import job_ctx

ROOT = Path(__file__).resolve().parent.parent
ROWS = 40_000
READY_AND_MAILED = """
SELECT j.status = 'succeeded' AND o.status = 'sent'
FROM jobs AS j JOIN email_outbox AS o ON o.dedup_key = 'job-ready:' || j.id
WHERE j.id = $1
"""


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


def start_worker_process(stack: Any, settings: Any, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": stack.dsn, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": TEST_SECRET, "SMTP_URL": stack.smtp.url, "PUBLIC_URL": settings.public_url,
           "EXPORT_STORAGE": settings.export_storage, "DB_POOL_MIN": "1", "EXPORT_BATCH_ROWS": "100"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "tests" / "worker_process.py")], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


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
