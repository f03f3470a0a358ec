"""Many writers per list, behind a lagging replica: a member reads their own write back at once through
either app instance, and every member's cached first page shows any member's write at once (cache fills
read the primary); only someone else's uncached read may lag, as the contract allows."""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from shared.db.replicas import POLL_INTERVAL
from tests.project_helpers import TASKS, add_member, new_project
from tests.replica_helpers import set_apply_delay
from web.app import create_app


async def replayed_everything(replica: Any, primary_dsn: str, timeout: float = 60.0) -> None:
    """Until the replica has replayed every record inserted so far (the position read-your-writes records)."""
    primary, standby = await asyncpg.connect(primary_dsn), await asyncpg.connect(replica.dsn("postgres"))
    try:
        target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
        deadline = asyncio.get_running_loop().time() + timeout
        while await standby.fetchval("SELECT pg_last_wal_replay_lsn()") < target:
            assert asyncio.get_running_loop().time() < deadline, "the replica did not catch up"
            await asyncio.sleep(0.05)
    finally:
        await primary.close()
        await standby.close()


async def test_two_members_behind_a_lagging_replica(aiohttp_client: Any, replica: Any, replica_settings: Any,
                                                    make_user: Any, db: asyncpg.Connection, stack: Any) -> None:
    settings = replica_settings.with_(replica_max_lag_seconds=3600)
    one, two = await aiohttp_client(create_app(settings)), await aiohttp_client(create_app(settings))
    ada, bob = await make_user(), await make_user()
    project = await new_project(one, ada)
    await add_member(db, project, bob, "editor")
    assert (await two.get(TASKS, headers=ada.headers)).status == 200  # Ada's first page cached, empty
    await replayed_everything(replica, stack.dsn)  # Ada's own writes so far are on the replica: she reads there
    await asyncio.sleep(4 * POLL_INTERVAL)  # ... once the processes' pollers have seen that position
    await set_apply_delay(replica, "6s")
    created = await one.post(TASKS, json={"title": "from bob", "project_id": project["id"]}, headers=bob.headers)
    assert created.status == 201
    task = await created.json()
    # Bob, through the other instance: his own write, at once (by WAL position; the replica is 6 s behind).
    got = await two.get(f"{TASKS}/{task['id']}", headers=bob.headers)
    assert got.status == 200 and (await got.json())["title"] == "from bob"
    uncached = await (await two.get(f"{TASKS}?sort=-updated_at", headers=bob.headers)).json()
    assert [t["id"] for t in uncached["items"]] == [task["id"]]
    # Ada's uncached read is served by the replica, which really is behind: Bob's task is not there yet.
    lagging = await (await two.get(f"{TASKS}?sort=-updated_at", headers=ada.headers)).json()
    assert lagging["items"] == []
    # Ada: her cached first page was invalidated by Bob's write and refills from the primary.
    page = await (await two.get(TASKS, headers=ada.headers)).json()
    assert [t["id"] for t in page["items"]] == [task["id"]]
    # A comment by Ada shows on Bob's cached page (comment_count) through the first instance, at once.
    assert (await two.get(TASKS, headers=bob.headers)).status == 200
    commented = await two.post(f"{TASKS}/{task['id']}/comments", json={"body": "seen"}, headers=ada.headers)
    assert commented.status == 201
    page = await (await one.get(TASKS, headers=bob.headers)).json()
    assert page["items"][0]["comment_count"] == 1
    comments = await (await one.get(f"{TASKS}/{task['id']}/comments", headers=ada.headers)).json()
    assert [c["body"] for c in comments["items"]] == ["seen"]  # Ada's own write, read back at once
