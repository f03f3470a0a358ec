"""Losing the primary, without a cluster: the one error classification, retry-once-or-503, the command
timeout, and the reconciler's reaction to a Redis that is new. (The drills against real Patroni and
Sentinel are in test_ha_drills.py.)"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from arq.connections import ArqRedis
from redis.asyncio import Redis

from shared.db import failover
from shared.config import ConfigError, Settings
from shared.db.database import Database
from shared.redis_client import RedisIdentity, arq_settings
from tests.helpers import assert_problem
from web.app import create_app
from worker.jobs.cleanup import sweep_jobs

from export_helpers import create_job, job_row
from worker_helpers import job_ctx

TASKS = "/api/v1/tasks"


@pytest.mark.parametrize(("exc", "kind"), [
    (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), failover.PRIMARY_GONE),
    (asyncpg.AdminShutdownError("terminating connection due to administrator command"), failover.PRIMARY_GONE),
    (asyncpg.CannotConnectNowError("the database system is shutting down"), failover.PRIMARY_GONE),
    (asyncpg.TargetServerAttributeNotMatched("None of the hosts match"), failover.PRIMARY_GONE),
    (asyncpg.InternalClientError("a bug of ours"), None),
    (ConnectionRefusedError(111, "Connect call failed"), failover.PRIMARY_GONE),
    (ConnectionResetError(104, "reset by peer"), failover.PRIMARY_GONE),
    (asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"), failover.READ_ONLY),
    (asyncio.TimeoutError(), failover.TIMEOUT),
    (asyncpg.TooManyConnectionsError("sorry, too many clients already"), failover.BUSY),
    (asyncpg.UniqueViolationError("duplicate key"), None),
    (asyncpg.InvalidTextRepresentationError("invalid input syntax"), None),
    (FileNotFoundError(2, "No such file"), None),  # storage, not the database
    (ValueError("bug"), None),
])
def test_every_database_failure_is_classified_in_one_place(exc: BaseException, kind: str | None) -> None:
    assert failover.classify(exc) == kind


def test_a_client_state_error_on_a_connection_that_just_died_counts_as_the_death() -> None:
    try:
        try:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        except asyncpg.ConnectionDoesNotExistError:  # what the rollback on the way out then raises
            raise asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    except asyncpg.InternalClientError as exc:
        assert failover.classify(exc) == failover.PRIMARY_GONE


@pytest.fixture
async def read_only_database(db: asyncpg.Connection, stack: Any) -> Any:
    """New sessions of the test database are read-only, as on a demoted primary; the app's open ones are cut."""
    async def set_read_only(on: bool) -> None:
        await db.execute(f"ALTER DATABASE taskdeck_test SET default_transaction_read_only = {'on' if on else 'off'}")

    async def cut_connections() -> None:
        await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")

    yield set_read_only, cut_connections
    await db.execute("ALTER DATABASE taskdeck_test RESET default_transaction_read_only")


async def test_a_write_that_lands_on_a_read_only_server_is_503_with_retry_after(
        aiohttp_client: Any, settings: Settings, make_user: Any, read_only_database: Any, db: asyncpg.Connection) -> None:
    set_read_only, cut_connections = read_only_database
    client = await aiohttp_client(create_app(settings))
    user = await make_user()
    await set_read_only(True)
    await cut_connections()

    response = await client.post(TASKS, json={"title": "lost?"}, headers=user.headers)
    await assert_problem(response, 503)
    assert response.headers["Retry-After"] == "2"
    # A read needs no primary: it still answers.
    assert (await client.get(TASKS, headers=user.headers)).status == 200
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_write_under_an_idempotency_key_waits_for_a_writable_primary_and_runs_once(
        aiohttp_client: Any, settings: Settings, make_user: Any, read_only_database: Any, db: asyncpg.Connection) -> None:
    set_read_only, cut_connections = read_only_database
    client = await aiohttp_client(create_app(settings))
    user = await make_user()
    await set_read_only(True)
    await cut_connections()

    async def promote_soon() -> None:
        await asyncio.sleep(1.0)
        await set_read_only(False)

    promotion = asyncio.ensure_future(promote_soon())
    started = time.monotonic()
    response = await client.post(TASKS, json={"title": "kept"}, headers={**user.headers, "Idempotency-Key": "k-1"})
    await promotion
    assert response.status == 201, await response.text()
    assert 1.0 <= time.monotonic() - started < 8
    again = await client.post(TASKS, json={"title": "kept"}, headers={**user.headers, "Idempotency-Key": "k-1"})
    assert again.status == 201 and (await again.json())["id"] == (await response.json())["id"]
    assert await db.fetchval("SELECT count(*) FROM tasks WHERE title = 'kept'") == 1


async def test_a_query_stuck_behind_a_dead_peer_ends_at_the_command_timeout_as_503(
        aiohttp_client: Any, settings: Settings, make_user: Any, stack: Any) -> None:
    client = await aiohttp_client(create_app(settings.with_(db_command_timeout=1)))
    user = await make_user()
    blocker = await asyncpg.connect(stack.dsn)
    try:
        async with blocker.transaction():  # stands in for a server that stopped answering
            await blocker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            response = await client.post(TASKS, json={"title": "stuck"}, headers=user.headers)
            took = time.monotonic() - started
    finally:
        await blocker.close()
    await assert_problem(response, 503)
    assert "Retry-After" in response.headers
    assert took < 5


async def test_the_reconciler_takes_every_lost_job_at_once_when_redis_is_emptied(
        aiohttp_client: Any, settings: Settings, make_user: Any, db: asyncpg.Connection, database: Database,
        arq_redis: ArqRedis) -> None:
    client = await aiohttp_client(create_app(settings))
    user = await make_user()
    ctx = job_ctx(settings, database, redis=arq_redis)
    await sweep_jobs(ctx)  # the worker's start: it has now seen this Redis
    job = await create_job(client, user, format="csv")
    await asyncio.sleep(1.2)  # past the new-Redis grace, far inside the normal one
    assert await sweep_jobs(ctx) == 0  # the queue entry is there: nothing to do

    await arq_redis.flushall()
    assert await sweep_jobs(ctx) == 1  # Redis forgot everything: re-enqueued now, not after GRACE
    assert await sweep_jobs(ctx) == 0
    row = await job_row(db, job["id"])
    assert (row["status"], row["enqueues"]) == ("queued", 1)


async def test_a_job_made_just_before_redis_was_emptied_is_not_left_for_the_full_grace(
        aiohttp_client: Any, settings: Settings, make_user: Any, database: Database, arq_redis: ArqRedis) -> None:
    client = await aiohttp_client(create_app(settings))
    user = await make_user()
    ctx = job_ctx(settings, database, redis=arq_redis)
    await sweep_jobs(ctx)
    ctx["redis_new_at"] = time.monotonic() - 60  # the worker has been up a while
    await create_job(client, user, format="csv")
    await arq_redis.flushall()
    assert await sweep_jobs(ctx) == 0  # Redis is new, but this row may still have its enqueue in flight
    await asyncio.sleep(1.2)
    assert await sweep_jobs(ctx) == 1  # the next sweep takes it: seconds, not GRACE (20 s)


async def test_redis_identity_tells_a_flush_and_another_server_apart_from_nothing(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        identity = RedisIdentity()
        assert await identity.changed(redis)  # first sight: nothing known about what it held
        assert not await identity.changed(redis)
        await redis.flushall()
        assert await identity.changed(redis)
        assert not await identity.changed(redis)
    finally:
        await redis.aclose()


@pytest.mark.parametrize(("env", "problem"), [
    ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together"),
    ({"REDIS_SENTINEL_MASTER": "taskdeck", "REDIS_URL": "redis://h/0"}, "go together"),
    ({"REDIS_SENTINELS": "127.0.0.1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS=127.0.0.1 is invalid"),
    ({"REDIS_SENTINELS": "h:99999", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS=h:99999 is invalid"),
    ({"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "unix:///tmp/r.sock"},
     "REDIS_URL must be a redis:// URL"),
])
def test_sentinel_settings_are_validated(env: dict[str, str], problem: str) -> None:
    base = {"DATABASE_URL": "postgresql://u@db/taskdeck", "TASKDECK_ENV": "development", **env}
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(base)
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_sentinels_replace_redis_urls_host_and_a_multi_host_database_url_is_accepted() -> None:
    settings = Settings.from_env({
        "TASKDECK_ENV": "development",
        "DATABASE_URL": "postgresql://u@10.0.0.1:5432,10.0.0.2:5432/taskdeck?target_session_attrs=read-write",
        "DATABASE_REPLICA_URLS": "postgresql://u@10.0.0.1:5432,10.0.0.2:5432/taskdeck?target_session_attrs=standby,"
                                 "postgresql://u@10.0.0.3/taskdeck",
        "REDIS_SENTINELS": "10.0.1.1:26379, 10.0.1.2:26379,[::1]:26379", "REDIS_SENTINEL_MASTER": "taskdeck",
        "REDIS_URL": "redis://:pw@ignored/3"})
    assert settings.redis_sentinels == (("10.0.1.1", 26379), ("10.0.1.2", 26379), ("::1", 26379))
    assert len(settings.database_replica_urls) == 2
    arq = arq_settings(settings)
    assert (arq.sentinel, arq.sentinel_master, arq.database, arq.password) == (True, "taskdeck", 3, "pw")
    with pytest.raises(ConfigError):
        Settings.from_env({"TASKDECK_ENV": "development", "REDIS_URL": "redis://r/0",
                           "DATABASE_URL": "postgresql://u@10.0.0.1:5432,10.0.0.2:nope/taskdeck"})
