"""The trash: a delete hides a task and its subtasks from every read, the trash lists it, a restore brings
back exactly what one delete took, and the purge removes it for good (comments too) after 30 days."""
from __future__ import annotations

from typing import Any

import asyncpg

from shared import trash
from tests.helpers import assert_problem
from tests.project_helpers import TASKS, new_task, shared_project

TRASH = "/api/v1/trash"


async def _tree(client: Any, user: Any, project: Any = None) -> tuple[dict, dict, dict]:
    root = await new_task(client, user, project, title="root")
    child = await new_task(client, user, project, title="child", parent_id=root["id"])
    grandchild = await new_task(client, user, project, title="grandchild", parent_id=child["id"])
    return root, child, grandchild


async def test_delete_trashes_the_subtree_and_every_read_is_404(client: Any, make_user: Any) -> None:
    ada = await make_user()
    root, child, grandchild = await _tree(client, ada)
    other = await new_task(client, ada, title="stays")
    first = await (await client.get(TASKS, headers=ada.headers)).json()  # fills the cached first page
    stats = await (await client.get(f"{TASKS}/stats", headers=ada.headers)).json()
    assert len(first["items"]) == 4 and stats["by_status"]["todo"] == 4
    assert (await client.post(f"{TASKS}/{child['id']}/comments", json={"body": "hi"},
                              headers=ada.headers)).status == 201

    assert (await client.delete(f"{TASKS}/{root['id']}", headers=ada.headers)).status == 204
    for task in (root, child, grandchild):
        await assert_problem(await client.get(f"{TASKS}/{task['id']}", headers=ada.headers), 404)
        await assert_problem(await client.patch(f"{TASKS}/{task['id']}", json={"title": "x"},
                                                headers=ada.headers), 404)
    await assert_problem(await client.get(f"{TASKS}/{child['id']}/comments", headers=ada.headers), 404)
    await assert_problem(await client.post(f"{TASKS}/{child['id']}/comments", json={"body": "x"},
                                           headers=ada.headers), 404)
    await assert_problem(await client.post(TASKS, json={"title": "late", "parent_id": child["id"]},
                                           headers=ada.headers), 422, "parent_id")
    listed = await (await client.get(TASKS, headers=ada.headers)).json()
    assert [t["id"] for t in listed["items"]] == [other["id"]]
    stats = await (await client.get(f"{TASKS}/stats", headers=ada.headers)).json()
    assert stats["by_status"]["todo"] == 1
    await assert_problem(await client.delete(f"{TASKS}/{root['id']}", headers=ada.headers), 404)

    page = await (await client.get(TRASH, headers=ada.headers)).json()
    assert [(i["task"]["id"], i["subtask_count"]) for i in page["items"]] == [(root["id"], 2)]
    assert page["next_cursor"] is None and page["items"][0]["trashed_at"].endswith("Z")

    restored = await client.post(f"{TASKS}/{root['id']}/restore", headers=ada.headers)
    assert restored.status == 200 and (await restored.json())["id"] == root["id"]
    got = await (await client.get(f"{TASKS}/{grandchild['id']}", headers=ada.headers)).json()
    assert got["parent_id"] == child["id"]
    assert (await (await client.get(f"{TASKS}/{child['id']}", headers=ada.headers)).json())["comment_count"] == 1
    assert (await (await client.get(TRASH, headers=ada.headers)).json())["items"] == []
    listed = await (await client.get(TASKS, headers=ada.headers)).json()
    assert len(listed["items"]) == 4
    await assert_problem(await client.post(f"{TASKS}/{root['id']}/restore", headers=ada.headers), 404)


async def test_restoring_a_subtask_of_a_trashed_parent_is_409(client: Any, make_user: Any) -> None:
    ada = await make_user()
    root, child, grandchild = await _tree(client, ada)
    assert (await client.delete(f"{TASKS}/{grandchild['id']}", headers=ada.headers)).status == 204
    assert (await client.delete(f"{TASKS}/{root['id']}", headers=ada.headers)).status == 204
    # deleted on its own, but its parent went later: the parent first
    problem = await assert_problem(await client.post(f"{TASKS}/{grandchild['id']}/restore",
                                                     headers=ada.headers), 409)
    assert str(child["id"]) in problem["detail"]
    # went along with the root: not a separate restore
    await assert_problem(await client.post(f"{TASKS}/{child['id']}/restore", headers=ada.headers), 409)
    trashed = {i["task"]["id"] for i in (await (await client.get(TRASH, headers=ada.headers)).json())["items"]}
    assert trashed == {root["id"], grandchild["id"]}
    assert (await client.post(f"{TASKS}/{root['id']}/restore", headers=ada.headers)).status == 200
    await assert_problem(await client.get(f"{TASKS}/{grandchild['id']}", headers=ada.headers), 404)
    assert (await client.post(f"{TASKS}/{grandchild['id']}/restore", headers=ada.headers)).status == 200
    assert (await client.get(f"{TASKS}/{grandchild['id']}", headers=ada.headers)).status == 200


async def test_trash_follows_the_roles(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, viewer, stranger = await make_user(), await make_user(), await make_user()
    project = await shared_project(client, db, ada, viewer=viewer)
    task = await new_task(client, ada, project)
    await assert_problem(await client.delete(f"{TASKS}/{task['id']}", headers=viewer.headers), 403)
    assert (await client.delete(f"{TASKS}/{task['id']}", headers=ada.headers)).status == 204
    assert len((await (await client.get(TRASH, headers=viewer.headers)).json())["items"]) == 1
    assert (await (await client.get(TRASH, headers=stranger.headers)).json())["items"] == []
    await assert_problem(await client.post(f"{TASKS}/{task['id']}/restore", headers=viewer.headers), 403)
    await assert_problem(await client.post(f"{TASKS}/{task['id']}/restore", headers=stranger.headers), 404)
    await assert_problem(await client.post(f"{TASKS}/99999999999/restore", headers=ada.headers), 404)
    await assert_problem(await client.get(f"{TRASH}?cursor=forged", headers=ada.headers), 422, "cursor")
    await assert_problem(await client.get(f"{TRASH}?limit=0", headers=ada.headers), 422, "limit")


async def test_trash_pages_by_cursor(client: Any, make_user: Any) -> None:
    ada = await make_user()
    ids = [(await new_task(client, ada, title=f"t{n}"))["id"] for n in range(3)]
    for task_id in ids:
        assert (await client.delete(f"{TASKS}/{task_id}", headers=ada.headers)).status == 204
    first = await (await client.get(f"{TRASH}?limit=2", headers=ada.headers)).json()
    rest = await (await client.get(f"{TRASH}?limit=2&cursor={first['next_cursor']}", headers=ada.headers)).json()
    assert [i["task"]["id"] for i in first["items"] + rest["items"]] == ids[::-1] and rest["next_cursor"] is None


async def test_purge_removes_old_trash_with_comments_in_batches(client: Any, make_user: Any,
                                                                db: asyncpg.Connection) -> None:
    ada = await make_user()
    old = [await _tree(client, ada) for _ in range(3)]
    recent = await new_task(client, ada, title="recent")
    await client.post(f"{TASKS}/{old[0][1]['id']}/comments", json={"body": "going"}, headers=ada.headers)
    for root, _, _ in old:
        assert (await client.delete(f"{TASKS}/{root['id']}", headers=ada.headers)).status == 204
    assert (await client.delete(f"{TASKS}/{recent['id']}", headers=ada.headers)).status == 204
    roots = [root["id"] for root, _, _ in old]
    await db.execute("UPDATE all_tasks SET trashed_at = now() - interval '31 days' WHERE trash_root = ANY($1)", roots)
    assert await trash.purge(db, batch=2) == 3  # two batches: 2, then 1
    every = [t["id"] for tree in old for t in tree]
    assert await db.fetchval("SELECT count(*) FROM all_tasks WHERE id = ANY($1)", every) == 0
    assert await db.fetchval("SELECT count(*) FROM comments WHERE task_id = ANY($1)", every) == 0
    assert await db.fetchval("SELECT count(*) FROM all_tasks WHERE id = $1", recent["id"]) == 1
    assert await trash.purge(db) == 0


async def test_a_restored_task_drops_an_assignee_who_left(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob = await make_user(), await make_user()
    project = await shared_project(client, db, ada, editor=bob)
    task = await new_task(client, ada, project, assignee_id=bob.id)
    assert (await client.delete(f"{TASKS}/{task['id']}", headers=ada.headers)).status == 204
    left = await client.delete(f"/api/v1/projects/{project['id']}/members/{bob.id}", headers=ada.headers)
    assert left.status == 204
    restored = await (await client.post(f"{TASKS}/{task['id']}/restore", headers=ada.headers)).json()
    assert restored["assignee_id"] is None
