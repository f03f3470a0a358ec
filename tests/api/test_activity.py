"""Project and task activity: newest first, paged, viewers only, a task's comments included."""
from __future__ import annotations

from typing import Any

import asyncpg

from shared import activity
from tests.helpers import assert_problem
from tests.project_helpers import PROJECTS, TASKS, add_member, new_project, new_task


async def _walk(client: Any, user: Any, url: str, limit: int = 2) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        response = await client.get(f"{url}?limit={limit}" + (f"&cursor={cursor}" if cursor else ""),
                                    headers=user.headers)
        assert response.status == 200, await response.text()
        page = await response.json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            return items


async def test_project_and_task_activity(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, viewer, eve = await make_user(name="Ada"), await make_user(name="Vic"), await make_user()
    project = await new_project(client, ada)
    await add_member(db, project, viewer, "viewer")
    task = await new_task(client, ada, project, title="Roses")
    other = await new_task(client, ada, project, title="Tulips")
    await client.post(f"{TASKS}/{task['id']}/comments", json={"body": "hi"}, headers=ada.headers)
    await client.patch(f"{TASKS}/{task['id']}", json={"status": "done"}, headers=ada.headers)
    await client.patch(f"{TASKS}/{other['id']}", json={"title": "Tulips!"}, headers=ada.headers)
    feed = await _walk(client, viewer, f"{PROJECTS}/{project['id']}/activity")
    assert [e["type"] for e in feed] == ["task.updated", "task.completed", "comment.created", "task.created",
                                         "task.created", "project.created"]
    assert [activity.describe(e) for e in feed[:2]] == ["Ada changed “Tulips!”", "Ada completed “Roses”"]
    mine = await _walk(client, viewer, f"{TASKS}/{task['id']}/activity", limit=1)
    assert [e["type"] for e in mine] == ["task.completed", "comment.created", "task.created"]
    for url in (f"{PROJECTS}/{project['id']}/activity", f"{TASKS}/{task['id']}/activity"):
        await assert_problem(await client.get(url, headers=eve.headers), 404)
        await assert_problem(await client.get(f"{url}?cursor=forged", headers=viewer.headers), 422)
        await assert_problem(await client.get(f"{url}?limit=101", headers=viewer.headers), 422)
    await assert_problem(await client.get(f"{PROJECTS}/99999999999999999999/activity", headers=ada.headers), 404)
    page = await (await client.get(f"{PROJECTS}/{project['id']}/activity?limit=1", headers=ada.headers)).json()
    foreign = await client.get(f"{TASKS}/{task['id']}/activity?cursor={page['next_cursor']}", headers=ada.headers)
    await assert_problem(foreign, 422)  # a cursor of another listing
