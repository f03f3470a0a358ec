"""Reads on a real streaming replica: read-your-writes by WAL position, the lag ceiling, failover to the primary.

The replica is the embedded one (pg_basebackup of the test server); `recovery_min_apply_delay` makes it
lag on purpose: it receives the WAL at once and applies each commit that much later.
"""
from __future__ import annotations

import asyncio
import time

import asyncpg
from prometheus_client import REGISTRY

from shared.db.database import Database
from launcher.devstack import free_port
from tests.replica_helpers import set_apply_delay
from web.app import create_app

TASKS = "/api/v1/tasks"
# Not the default first page: that one is served from the cache, whose fills read the primary (shared/cache.py).
LISTED = f"{TASKS}?sort=created_at"
ON_REPLICA = "SELECT pg_is_in_recovery()"


def reads(target: str) -> float:
    return REGISTRY.get_sample_value("taskdeck_db_reads_total", {"target": target}) or 0.0


async def poll_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (result := await predicate()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(interval)
    return result


async def test_a_lagging_replica_never_shows_a_user_less_than_their_own_last_write(aiohttp_client, replica,
                                                                                   replica_settings, make_user):
    # No lag ceiling to speak of, so only the WAL position keeps the writer off the replica. The old fixed
    # 5-second "recent writer" marker showed a 404 here 6 s after the create.
    client = await aiohttp_client(create_app(replica_settings.with_(replica_max_lag_seconds=3600)))
    writer, other = await make_user(), await make_user()
    await set_apply_delay(replica, "8s")
    created = await client.post(TASKS, json={"title": "before"}, headers=writer.headers)
    assert created.status == 201
    task = await created.json()
    url = f"{TASKS}/{task['id']}"
    changed = await client.patch(url, json={"title": "after"}, headers=writer.headers)
    assert changed.status == 200
    started = time.monotonic()
    while True:  # until the replica has both writes and serves the writer too
        before = reads("replica-0")
        got = await client.get(url, headers=writer.headers)
        assert got.status == 200 and (await got.json())["title"] == "after", time.monotonic() - started
        listed = await (await client.get(LISTED, headers=writer.headers)).json()
        assert [t["title"] for t in listed["items"]] == ["after"]
        writer_on_replica = reads("replica-0") - before
        # Someone else has nothing newer to see: the replica serves them all along.
        before = reads("replica-0")
        assert (await client.get(LISTED, headers=other.headers)).status == 200
        assert reads("replica-0") == before + 1
        if writer_on_replica:
            break
        assert time.monotonic() - started < 60, "the replica never caught up"
        await asyncio.sleep(0.25)
    assert time.monotonic() - started > 5  # it really lagged past the old marker's 5 seconds


async def test_a_replica_past_the_lag_ceiling_is_skipped_for_everyone(aiohttp_client, replica, replica_settings,
                                                                     make_user, db):
    # development: /ready shows the detail (lag) without METRICS_TOKEN
    client = await aiohttp_client(create_app(replica_settings.with_(replica_max_lag_seconds=1,
                                                                    environment="development")))
    reader = await make_user()
    await set_apply_delay(replica, "5s")
    await db.execute("INSERT INTO users (email, password_hash) VALUES ('someone@example.com', 'x')")

    async def lagging():
        body = await (await client.get("/ready")).json()
        return body["checks"]["replicas"][0]["status"] == "lagging" and body

    body = await poll_until(lagging)
    assert body["status"] == "ok" and body["checks"]["replicas"][0]["lag_seconds"] >= 1  # rounded to ms
    primary = reads("primary")
    assert (await client.get(LISTED, headers=reader.headers)).status == 200
    assert reads("primary") == primary + 1


async def test_a_stopped_replica_costs_no_failed_request(aiohttp_client, replica, replica_settings, make_user):
    client = await aiohttp_client(create_app(replica_settings))
    user = await make_user()
    assert (await client.post(TASKS, json={"title": "t"}, headers=user.headers)).status == 201

    async def served_by_replica():
        before = reads("replica-0")
        assert (await client.get(LISTED, headers=user.headers)).status == 200
        return reads("replica-0") > before

    await poll_until(served_by_replica)  # the replica does serve, before it stops
    await asyncio.to_thread(replica.stop)
    stopped = time.monotonic()
    # The first read comes before the poller can notice: the replica fails it, the primary answers it.
    first = await client.get(LISTED, headers=user.headers)
    failover = time.monotonic() - stopped
    assert first.status == 200 and len((await first.json())["items"]) == 1
    for _ in range(20):
        assert (await client.get(LISTED, headers=user.headers)).status == 200
    ready = await client.get("/ready")
    body = await ready.json()
    assert ready.status == 200 and body["checks"]["replicas"][0]["status"] == "down"
    print(f"first good read {failover * 1000:.1f} ms after the replica stopped")

    await asyncio.to_thread(replica.start)  # and it comes back into use by itself
    await poll_until(served_by_replica, interval=0.2)


async def test_a_replica_failing_mid_query_is_benched_and_the_primary_answers(replica, replica_settings):
    database = await Database.connect(replica_settings)
    try:
        await database.replica_set.stop()  # no poller: the replica still looks healthy when it goes away
        database.replicas[0].checked_at = time.monotonic() + 60
        fallbacks = REGISTRY.get_sample_value("taskdeck_db_replica_fallbacks_total", {"replica": "replica-0"}) or 0
        await asyncio.to_thread(replica.stop)
        assert await database.read_as(None, lambda conn: conn.fetchval(ON_REPLICA)) is False
        assert database.replicas[0].state == "down"
        assert REGISTRY.get_sample_value("taskdeck_db_replica_fallbacks_total",
                                         {"replica": "replica-0"}) == fallbacks + 1
    finally:
        await database.close()


async def test_a_table_the_replica_has_not_replayed_yet_is_read_from_the_primary(replica, replica_settings, db):
    # Right after `taskdeck migrate`, a lagging replica answers "relation does not exist".
    database = await Database.connect(replica_settings.with_(replica_max_lag_seconds=3600))
    try:
        await set_apply_delay(replica, "30s")
        await db.execute("CREATE TABLE fresh_from_migration (n int); INSERT INTO fresh_from_migration VALUES (7)")
        assert await database.read_as(None, lambda conn: conn.fetchval("SELECT n FROM fresh_from_migration")) == 7
        assert database.replicas[0].state == "down"  # benched at once, not tried again on the next read
        assert await database.read_as(None, lambda conn: conn.fetchval(ON_REPLICA)) is False
    finally:
        await database.close()
        await db.execute("DROP TABLE fresh_from_migration")


async def test_a_bad_query_is_not_blamed_on_the_replica(replica, replica_settings):
    database = await Database.connect(replica_settings)
    try:
        try:
            await database.read_as(None, lambda conn: conn.fetchval("SELECT 1 / 0"))
        except asyncpg.DivisionByZeroError:
            pass
        else:
            raise AssertionError("the error was swallowed")
        assert database.replicas[0].state == "up"
        assert await database.read_as(None, lambda conn: conn.fetchval(ON_REPLICA)) is True
    finally:
        await database.close()


async def test_without_redis_a_users_reads_go_to_the_primary(replica, replica_settings):
    # Cannot tell what the user wrote last, so the primary (which has everything) answers.
    database = await Database.connect(replica_settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        assert await database.read_as(42, lambda conn: conn.fetchval(ON_REPLICA)) is False
        assert await database.read_as(None, lambda conn: conn.fetchval(ON_REPLICA)) is True
        await database.wrote(42)  # logged, not raised: the write itself succeeded
    finally:
        await database.close()


async def test_reads_round_robin_over_current_replicas(replica, replica_settings):
    url = replica_settings.database_replica_urls[0]
    database = await Database.connect(replica_settings.with_(database_replica_urls=(url, url)))
    try:
        names = [database.replica_set.choose(database.replica_set.candidates(), 0).name for _ in range(4)]
        assert sorted(names) == ["replica-0", "replica-0", "replica-1", "replica-1"]
        assert database.replica_set.choose(database.replica_set.candidates(), 2**62) is None  # none that current
    finally:
        await database.close()


async def test_a_replica_down_at_start_does_not_stop_the_process(settings):
    database = await Database.connect(settings.with_(
        database_replica_urls=(f"postgresql://postgres@127.0.0.1:{free_port()}/taskdeck_test",)))
    try:
        assert database.replicas[0].state == "down"
        assert await database.read_as(1, lambda conn: conn.fetchval("SELECT 1")) == 1
    finally:
        await database.close()


async def test_a_primary_posing_as_replica_is_not_used(settings):
    database = await Database.connect(settings.with_(database_replica_urls=(settings.database_url,)))
    try:
        assert database.replicas[0].describe()["error"] == "not in recovery"
    finally:
        await database.close()


async def test_an_export_from_behind_a_lagging_replica_has_the_owners_last_write(aiohttp_client, replica,
                                                                                replica_settings, make_user):
    from tests.export_helpers import create_job, download, fetch_job, job_app, parse_csv, run_jobs

    settings = replica_settings.with_(replica_max_lag_seconds=3600)
    client = await aiohttp_client(job_app(settings))
    owner = await make_user()
    await set_apply_delay(replica, "60s")
    task = await (await client.post(TASKS, json={"title": "draft"}, headers=owner.headers)).json()
    assert (await client.patch(f"{TASKS}/{task['id']}", json={"title": "final"}, headers=owner.headers)).status == 200
    job = await create_job(client, owner, format="csv")
    await run_jobs(settings)  # the worker reads as the owner: the replica lacks their writes, so the primary
    job = await fetch_job(client, owner, job)
    assert job["status"] == "succeeded", job
    assert [row["title"] for row in parse_csv(await download(client, owner, job))] == ["final"]


async def test_a_write_whose_position_cannot_be_read_keeps_the_writer_on_the_primary(replica, replica_settings):
    """The primary gone right after a write (a failover): recording its position must not fail the request,
    and no replica may serve that user a read that lacks the write."""
    database = await Database.connect(replica_settings)
    try:
        assert await database.read_as(7, lambda conn: conn.fetchval(ON_REPLICA)) is True
        healthy = database.write
        database.write = await asyncpg.create_pool(replica_settings.database_url, min_size=0, max_size=1)
        await database.write.close()  # asyncpg now raises InterfaceError, as on a connection lost mid-failover
        try:
            await database.wrote(7)
        finally:
            database.write = healthy
        assert await database.read_as(7, lambda conn: conn.fetchval(ON_REPLICA)) is False
        assert await database.read_as(8, lambda conn: conn.fetchval(ON_REPLICA)) is True
    finally:
        await database.close()
