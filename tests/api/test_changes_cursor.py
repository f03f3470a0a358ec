"""/api/v1/changes: exactly once under concurrent out-of-order commits, rights, bad cursors, retention."""
from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from shared import events, tasks
from tests.helpers import assert_problem
from tests.project_helpers import PROJECTS, TASKS, add_member, new_project, new_task

CHANGES = "/api/v1/changes"


async def _page(client: Any, user: Any, since: str | None = None, limit: int = 100) -> dict[str, Any]:
    query = f"?limit={limit}" + (f"&since={since}" if since is not None else "")
    response = await client.get(CHANGES + query, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def _now(client: Any, user: Any) -> str:
    page = await _page(client, user)
    assert page["items"] == [] and page["next_cursor"]
    return str(page["next_cursor"])


async def test_concurrent_writers_are_seen_exactly_once(client: Any, make_user: Any, stack: Any) -> None:
    """Writers commit in random order, some holding their transaction open while later ones commit, some
    roll back; a reader walking /changes meanwhile sees each committed event exactly once."""
    ada = await make_user()
    project = await new_project(client, ada)
    cursor = await _now(client, ada)
    committed: list[int] = []
    rng = random.Random(7)

    async def writer(number: int) -> None:
        conn = await asyncpg.connect(stack.dsn)
        try:
            for round_ in range(4):
                transaction = conn.transaction()
                await transaction.start()
                written = await tasks.create_task(conn, owner_id=ada.id, data={
                    "title": f"w{number}-{round_}", "project_id": project["id"]})
                hold = 1.0 if number % 5 == 0 and round_ == 1 else rng.random() * 0.1
                await asyncio.sleep(hold)  # later writers commit meanwhile: commit order != xid/id order
                if number % 7 == 3 and round_ == 2:
                    await transaction.rollback()
                else:
                    await transaction.commit()
                    committed.append(written.task["id"])
        finally:
            await conn.close()

    seen: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            page = await _page(client, ada, cursor, limit=3)
            seen.extend(e["data"]["id"] for e in page["items"] if e["type"] == "task.created")
            cursor = page["next_cursor"]
            if finished and not page["items"]:
                return
            await asyncio.sleep(0.005)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(20)))
    done.set()
    await reading
    assert len(committed) == 20 * 4 - 3  # writers 3, 10 and 17 roll one back
    assert sorted(seen) == sorted(committed) and len(seen) == len(set(seen))


async def test_a_plain_id_cursor_would_skip(stack: Any, make_user: Any, client: Any, settings: Any) -> None:
    """The failure the horizon prevents, shown on the table itself: an older id commits after a newer one."""
    ada = await make_user()
    project = await new_project(client, ada)
    first, second = await asyncpg.connect(stack.dsn), await asyncpg.connect(stack.dsn)
    try:
        slow = first.transaction()
        await slow.start()
        await tasks.create_task(first, owner_id=ada.id, data={"title": "slow", "project_id": project["id"]})
        async with second.transaction():
            await tasks.create_task(second, owner_id=ada.id, data={"title": "fast", "project_id": project["id"]})
        by_id = await second.fetch("SELECT id FROM events ORDER BY id")
        page = await _page(client, ada, events.encode(settings.secret_key, ada.id, events.Position(0, 0)))
        assert [e["data"]["title"] for e in page["items"] if e["type"] == "task.created"] == []
        assert len(by_id) == 2  # an id cursor would now stand past the slow writer's event, for ever
        await slow.commit()
        page = await _page(client, ada, page["next_cursor"])
        assert [e["data"]["title"] for e in page["items"] if e["type"] == "task.created"] == ["slow", "fast"]
    finally:
        await first.close()
        await second.close()


async def test_only_the_callers_projects_and_removal_and_deletion(client: Any, make_user: Any,
                                                                  db: asyncpg.Connection) -> None:
    ada, bob, eve = await make_user(), await make_user(), await make_user()
    cursors = {u.id: await _now(client, u) for u in (ada, bob, eve)}
    project = await new_project(client, ada)
    await add_member(db, project, bob, "editor")
    await new_task(client, ada, project, title="shared")
    await new_task(client, eve, title="eve's own")
    assert (await client.delete(f"{PROJECTS}/{project['id']}/members/{bob.id}", headers=ada.headers)).status == 204
    await new_task(client, ada, project, title="after bob left")

    async def types(user: Any) -> list[tuple[str, Any]]:
        page = await _page(client, user, cursors[user.id])
        cursors[user.id] = page["next_cursor"]
        return [(e["type"], e["data"].get("title")) for e in page["items"]]

    assert await types(bob) == [("member.removed", None)]  # nothing else: bob is not a member any more
    assert await types(eve) == [("task.created", "eve's own")]
    assert await types(ada) == [("project.created", None), ("task.created", "shared"), ("member.removed", None),
                                ("task.created", "after bob left")]
    await add_member(db, project, bob, "viewer")
    assert (await client.delete(f"{PROJECTS}/{project['id']}", headers=ada.headers)).status == 204
    assert await types(bob) == [("project.deleted", None)]
    assert await types(ada) == [("project.deleted", None)]
    assert await types(eve) == []


async def test_event_shape_and_its_id_is_a_cursor(client: Any, make_user: Any) -> None:
    ada = await make_user(name="Ada")
    since = await _now(client, ada)
    task = await new_task(client, ada, title="one")
    await client.patch(f"{TASKS}/{task['id']}", json={"title": "two"}, headers=ada.headers)
    page = await _page(client, ada, since, limit=1)
    [event] = page["items"]
    assert set(event) == {"id", "type", "project_id", "task_id", "actor", "at", "data"}
    assert event["actor"] == {"id": ada.id, "name": "Ada"} and event["task_id"] == task["id"]
    assert event["data"] == task and event["at"].endswith("Z")
    assert page["next_cursor"] == event["id"]
    rest = await _page(client, ada, event["id"])
    assert [e["type"] for e in rest["items"]] == ["task.updated"]


async def test_bad_cursors_are_422_and_never_someone_elses(client: Any, make_user: Any) -> None:
    ada, bob = await make_user(), await make_user()
    await new_task(client, ada)
    adas = await _now(client, ada)
    payload, mac = adas.split(".")
    for since in ("garbage", adas[:-2], f"{payload}x.{mac}", "a" * 2000, "é.é", f"{payload}.", "."):
        await assert_problem(await client.get(f"{CHANGES}?since={since}", headers=ada.headers), 422)
    await assert_problem(await client.get(f"{CHANGES}?since={adas}", headers=bob.headers), 422)
    for limit in ("0", "501", "x"):
        await assert_problem(await client.get(f"{CHANGES}?limit={limit}", headers=ada.headers), 422)
    await assert_problem(await client.get(CHANGES), 401)


async def test_retention_deletes_in_batches_and_old_cursors_are_410(client: Any, make_user: Any,
                                                                    database: Any, db: asyncpg.Connection) -> None:
    ada = await make_user()
    old = await _now(client, ada)
    for n in range(5):
        await new_task(client, ada, title=f"t{n}")
    middle = (await _page(client, ada, old, limit=2))["next_cursor"]
    await db.execute("UPDATE events SET at = now() - interval '40 days' WHERE id <= 3")
    cutoff = datetime.now(timezone.utc) - timedelta(days=30)
    async with database.write.acquire() as conn:
        assert await events.delete_expired(conn, older_than=cutoff, batch=2) == 2
        assert await events.delete_expired(conn, older_than=cutoff, batch=2) == 1
        assert await events.delete_expired(conn, older_than=cutoff, batch=2) == 0
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    for cursor in (old, middle):
        await assert_problem(await client.get(f"{CHANGES}?since={cursor}", headers=ada.headers), 410)
    fresh = await _now(client, ada)
    assert (await _page(client, ada, fresh))["items"] == []
