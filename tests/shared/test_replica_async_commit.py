"""Read-your-writes with the primary at synchronous_commit=off and a replica that applies at once.

An asynchronous commit returns before its WAL is written, so the primary's *write* position read right after
it can be behind the commit record; the position recorded for the writer must be at or past it.
"""
from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from web.app import create_app
from web.keys import DB

TASKS = "/api/v1/tasks"


def reads(target: str) -> float:
    return REGISTRY.get_sample_value("taskdeck_db_reads_total", {"target": target}) or 0.0


async def test_a_new_task_is_readable_at_once_under_asynchronous_commit(aiohttp_client, replica_settings,
                                                                         make_user, db):
    # The app's own connections commit asynchronously (a libpq option, so nothing else is affected).
    settings = replica_settings.with_(database_url=replica_settings.database_url + "?synchronous_commit=off",
                                      replica_max_lag_seconds=3600)
    client = await aiohttp_client(create_app(settings))
    database = client.app[DB]
    async with database.write.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    deadline = time.monotonic() + 30
    while database.replicas[0].state != "up":
        assert time.monotonic() < deadline, "the replica never came up"
        await asyncio.sleep(0.05)
    user = await make_user()
    missing = []
    for attempt in range(100):
        created = await client.post(TASKS, json={"title": f"task {attempt}"}, headers=user.headers)
        assert created.status == 201
        got = await client.get(f"{TASKS}/{(await created.json())['id']}", headers=user.headers)
        if got.status != 200:
            missing.append((attempt, got.status))
        await asyncio.sleep(0.03)  # lets the replica poller move on now and then
    before = reads("replica-0")
    assert missing == [], f"{len(missing)} of 100 reads right after a 201 missed the new task: {missing[:5]}"
    # Not vacuous: once it has replayed the writes, the replica serves this very user.
    last = f"{TASKS}/{(await created.json())['id']}"
    while reads("replica-0") == before:
        assert time.monotonic() < deadline + 30, "the replica never served the writer: the test proved nothing"
        assert (await client.get(last, headers=user.headers)).status == 200
        await asyncio.sleep(0.1)
