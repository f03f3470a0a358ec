"""Workers that outlive their dependencies and stop cleanly: real worker processes, real Redis and PostgreSQL.

- Redis stopped and restarted (same port) under a running worker: it waits, logs once, counts it, and
  picks up new jobs afterwards. The session's Redis is shared, so this test runs its own RedisServer.
- SIGTERM: running jobs finish within the grace period, or are handed back and finished elsewhere;
  the stopping worker's heartbeat goes, the other's stays.
- PostgreSQL connections killed mid-export (pg_terminate_backend): the job is retried, nothing lost.
"""
from __future__ import annotations

import asyncio
import inspect
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from launcher.devstack import RedisServer
from shared.observability.heartbeats import live_workers
from web.app import create_app
from worker.jobs import exports as export_jobs

from tests.export_helpers import create_job, job_row, run_worker_until, seed_many
from tests.worker_helpers import start_worker_process

ROWS = 40_000
SUCCEEDED = "SELECT status = 'succeeded' FROM jobs WHERE id = $1"
READY_AND_MAILED = """
SELECT j.status = 'succeeded' AND o.status = 'sent'
FROM jobs AS j JOIN email_outbox AS o ON o.dedup_key = 'job-ready:' || j.id
WHERE j.id = $1
"""


async def poll_until(check: Any, what: str, timeout: float = 60.0, procs: tuple[Any, ...] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in procs:
            assert proc.poll() is None, f"worker exited ({proc.returncode}):\n{log.read_text()}"
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[bytes] | None) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def mid_export(db: asyncpg.Connection, job_id: int) -> bool:
    progress = await db.fetchval("SELECT progress FROM jobs WHERE id = $1 AND status = 'running'", job_id)
    return bool(progress and progress > 0)


async def test_a_worker_waits_out_a_redis_outage_and_resumes(aiohttp_client: Any, settings: Any, stack: Any,
                                                             tmp_path: Path, make_user: Any,
                                                             db: asyncpg.Connection) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    own = settings.with_(redis_url=redis_server.url)
    client = await aiohttp_client(create_app(own))
    user = await make_user()
    await seed_many(db, user.id, 10)
    await db.execute("UPDATE tasks SET due_at = NULL")  # no reminder mails from the cron
    log = tmp_path / "worker.log"
    worker = start_worker_process(stack, own, log, WORKER_CRON="1")
    redis: ArqRedis | None = None
    try:
        redis = await create_pool(RedisSettings.from_dsn(own.redis_url))
        [worker_id] = await poll_until(lambda: live_workers(redis), "the worker's heartbeat", procs=((worker, log),))
        await redis.aclose()
        redis = None

        redis_server.stop()
        await poll_until(lambda: "Redis unreachable" in log.read_text(), "the outage log line",
                         procs=((worker, log),))
        during = await create_job(client, user, format="csv")  # accepted; its enqueue is lost
        await asyncio.sleep(3)  # several backoff rounds: still alive, still one log line
        assert worker.poll() is None, log.read_text()

        redis_server = RedisServer(tmp_path / "redis", port=redis_server.port)  # same port, empty (no persistence)
        redis_server.start()
        redis = await create_pool(RedisSettings.from_dsn(own.redis_url))
        beats = await poll_until(lambda: live_workers(redis), "the heartbeat after the outage", procs=((worker, log),))
        assert list(beats) == [worker_id] and "redis_outages=1" in beats[worker_id]

        after = await create_job(client, user, format="csv")
        await poll_until(lambda: db.fetchval(READY_AND_MAILED, after["id"]), "the export made after the outage",
                         procs=((worker, log),))
        # The job accepted during the outage: the sweeper re-enqueues it from its row (GRACE 20 s).
        await poll_until(lambda: db.fetchval(READY_AND_MAILED, during["id"]), "the export made during the outage",
                         timeout=90, procs=((worker, log),))
        text = log.read_text()
        assert text.count("Redis unreachable") == 1 and "Redis is back" in text
    finally:
        if redis is not None:
            await redis.aclose()
        code = stop(worker)
        redis_server.stop()
    assert code == 0, log.read_text()


@pytest.fixture
async def export_client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(create_app(settings))


async def long_export(client: Any, make_user: Any, db: asyncpg.Connection) -> dict[str, Any]:
    user = await make_user()
    await seed_many(db, user.id, ROWS)
    await db.execute("UPDATE tasks SET due_at = NULL")  # no reminder mails from the workers' cron
    return await create_job(client, user, format="csv")


async def test_sigterm_hands_a_running_job_back_to_another_worker(export_client: Any, make_user: Any,
                                                                  db: asyncpg.Connection, settings: Any, stack: Any,
                                                                  tmp_path: Path, arq_redis: ArqRedis) -> None:
    job = await long_export(export_client, make_user, db)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    # Batches of 10 rows: the export runs for several seconds, long enough to be interrupted.
    first = start_worker_process(stack, settings, log_a, WORKER_SHUTDOWN_GRACE="0", EXPORT_BATCH_ROWS="10")
    second = None
    try:
        await poll_until(lambda: mid_export(db, job["id"]), "the export to start", procs=((first, log_a),))
        second = start_worker_process(stack, settings, log_b)
        await poll_until(lambda: _count(arq_redis, 2), "two heartbeats")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, log_a.read_text()
        alive = await live_workers(arq_redis)
        assert len(alive) == 1  # the clean stop removed only its own heartbeat
        await poll_until(lambda: db.fetchval(READY_AND_MAILED, job["id"]), "the other worker to finish",
                         procs=((second, log_b),))
    finally:
        stop(first)
        stop(second)
    done = await job_row(db, job["id"])
    assert (done["status"], done["attempts"], done["row_count"]) == ("succeeded", 2, ROWS)
    assert "started, attempt 2" in log_b.read_text()
    assert len(stack.smtp.messages()) == 1


async def _count(redis: ArqRedis, count: int) -> bool:
    return len(await live_workers(redis)) == count


async def test_sigterm_lets_a_running_job_finish_within_the_grace_period(export_client: Any, make_user: Any,
                                                                         db: asyncpg.Connection, settings: Any,
                                                                         stack: Any, tmp_path: Path,
                                                                         arq_redis: ArqRedis) -> None:
    job = await long_export(export_client, make_user, db)
    log = tmp_path / "worker.log"
    worker = start_worker_process(stack, settings, log, WORKER_SHUTDOWN_GRACE="120", EXPORT_BATCH_ROWS="10")
    try:
        await poll_until(lambda: mid_export(db, job["id"]), "the export to start", procs=((worker, log),))
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=150) == 0, log.read_text()
        assert "to be completed" in log.read_text()  # arq's "stop picking, let running jobs finish" path
    finally:
        stop(worker)
    done = await job_row(db, job["id"])
    assert (done["status"], done["attempts"], done["row_count"]) == ("succeeded", 1, ROWS), log.read_text()
    assert await live_workers(arq_redis) == {}


async def test_postgres_connections_killed_mid_export_the_job_retries(export_client: Any, make_user: Any,
                                                                      db: asyncpg.Connection, settings: Any,
                                                                      stack: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(export_jobs, "BATCH_ROWS", 100)
    monkeypatch.setattr(export_jobs, "PROGRESS_EVERY", 100)
    job = await long_export(export_client, make_user, db)
    killed: list[int] = []

    async def kill_backends_mid_export() -> None:
        conn = await asyncpg.connect(stack.dsn)  # `db` is busy with run_worker_until's polling
        try:
            await poll_until(lambda: mid_export(conn, job["id"]), "the export to start")
            # Every client connection to the test database but ours: the worker's pools (and the app's).
            killed.extend(await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid NOT IN (pg_backend_pid(), $1) AND backend_type = 'client backend'", db.get_server_pid()))
        finally:
            await conn.close()

    killer = asyncio.create_task(kill_backends_mid_export())
    await run_worker_until(settings, db, READY_AND_MAILED, job["id"], timeout=120)
    await killer
    assert killed
    done = await job_row(db, job["id"])
    assert (done["status"], done["row_count"], done["error"]) == ("succeeded", ROWS, None)
    assert done["attempts"] == 2  # the cut-off run released the job, the retry finished it
    assert len(stack.smtp.messages()) == 1 and await db.fetchval("SELECT count(*) FROM email_outbox") == 1


def test_an_error_raised_while_handling_a_dropped_connection_counts_as_transient() -> None:
    from worker.jobs.runner import is_transient

    def rollback_after_drop() -> None:
        try:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        except asyncpg.ConnectionDoesNotExistError:
            # What asyncpg's transaction __aexit__ raises when it tries to roll back on the dead connection.
            raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")

    with pytest.raises(asyncpg.InternalClientError) as info:
        rollback_after_drop()
    assert is_transient(info.value)
    assert not is_transient(asyncpg.InternalClientError("a bug of ours"))
    assert not is_transient(ValueError("bad data"))
