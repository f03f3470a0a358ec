"""Subtasks: a parent in the same project, at most 4 levels, no cycles, checked by the database (also when
two changes race), moved along with their parent, and listed with the parent_id filter."""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.helpers import assert_problem
from tests.project_helpers import TASKS, new_project, new_task, shared_project


async def _chain(client: Any, user: Any, levels: int, project: Any = None) -> list[dict]:
    chain = [await new_task(client, user, project, title="level 1")]
    for level in range(2, levels + 1):
        chain.append(await new_task(client, user, project, title=f"level {level}", parent_id=chain[-1]["id"]))
    return chain


async def test_parent_rules_are_422(client: Any, make_user: Any) -> None:
    ada, bob = await make_user(), await make_user()
    chain = await _chain(client, ada, 4)
    assert chain[3]["parent_id"] == chain[2]["id"]
    elsewhere = await new_task(client, ada, await new_project(client, ada, "Other"))
    foreign = await new_task(client, bob)
    for parent in (chain[3]["id"], elsewhere["id"], foreign["id"], 99999999999, -1, "7"):
        await assert_problem(await client.post(TASKS, json={"title": "x", "parent_id": parent},
                                               headers=ada.headers), 422, "parent_id")
    # cycles: onto itself, onto its own descendant
    await assert_problem(await client.patch(f"{TASKS}/{chain[0]['id']}", json={"parent_id": chain[0]["id"]},
                                            headers=ada.headers), 422, "parent_id")
    await assert_problem(await client.patch(f"{TASKS}/{chain[1]['id']}", json={"parent_id": chain[3]["id"]},
                                            headers=ada.headers), 422, "parent_id")
    # a two-level subtree under a level-3 task would make 5 levels
    pair = await _chain(client, ada, 2)
    await assert_problem(await client.patch(f"{TASKS}/{pair[0]['id']}", json={"parent_id": chain[2]["id"]},
                                            headers=ada.headers), 422, "parent_id")
    moved = await client.patch(f"{TASKS}/{pair[0]['id']}", json={"parent_id": chain[1]["id"]}, headers=ada.headers)
    assert moved.status == 200 and (await moved.json())["parent_id"] == chain[1]["id"]
    detached = await client.patch(f"{TASKS}/{pair[0]['id']}", json={"parent_id": None}, headers=ada.headers)
    assert (await detached.json())["parent_id"] is None


async def test_the_database_refuses_a_cycle_made_by_two_concurrent_changes(stack: Any, client: Any,
                                                                           make_user: Any) -> None:
    ada = await make_user()
    a, b = await new_task(client, ada, title="a"), await new_task(client, ada, title="b")
    first, second = await asyncpg.connect(stack.dsn), await asyncpg.connect(stack.dsn)
    try:
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await first.execute("UPDATE tasks SET parent_id = $1 WHERE id = $2", b["id"], a["id"])
        racing = asyncio.ensure_future(second.execute("UPDATE tasks SET parent_id = $1 WHERE id = $2",
                                                      a["id"], b["id"]))
        await asyncio.sleep(0.3)
        assert not racing.done()  # waits for the project's tree lock
        await one.commit()
        with pytest.raises(asyncpg.CheckViolationError, match="ancestor"):
            await racing
        await two.rollback()
    finally:
        await first.close()
        await second.close()


async def test_moving_a_parent_takes_its_subtasks(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    home = await shared_project(client, db, ada, editor=bob)
    away = await new_project(client, ada, "Away")
    chain = await _chain(client, ada, 3, home)
    await client.patch(f"{TASKS}/{chain[2]['id']}", json={"assignee_id": bob.id}, headers=ada.headers)
    moved = await client.patch(f"{TASKS}/{chain[0]['id']}", json={"project_id": away["id"]}, headers=ada.headers)
    assert moved.status == 200
    for task in chain:
        got = await (await client.get(f"{TASKS}/{task['id']}", headers=ada.headers)).json()
        assert got["project_id"] == away["id"] and got["parent_id"] == task["parent_id"]
        assert got["assignee_id"] is None  # bob is not a member of the new project
    # a subtask moved on its own leaves its parent behind
    alone = await client.patch(f"{TASKS}/{chain[2]['id']}", json={"project_id": home["id"]}, headers=ada.headers)
    assert (await alone.json())["parent_id"] is None


async def test_parent_id_filter(client: Any, make_user: Any) -> None:
    ada = await make_user()
    root = await new_task(client, ada, title="root")
    kids = [await new_task(client, ada, title=f"kid {n}", parent_id=root["id"]) for n in range(2)]
    await new_task(client, ada, title="grandkid", parent_id=kids[0]["id"])
    top = await (await client.get(f"{TASKS}?parent_id=none", headers=ada.headers)).json()
    assert [t["id"] for t in top["items"]] == [root["id"]]
    direct = await (await client.get(f"{TASKS}?parent_id={root['id']}&sort=created_at", headers=ada.headers)).json()
    assert [t["id"] for t in direct["items"]] == [k["id"] for k in kids]
    for bad in ("nope", "0", "-3", "99999999999999999999"):
        await assert_problem(await client.get(f"{TASKS}?parent_id={bad}", headers=ada.headers), 422, "parent_id")
