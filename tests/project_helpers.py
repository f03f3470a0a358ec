"""Arranging shared projects for the project, rights, comment and cache tests."""
from __future__ import annotations

from typing import Any

import asyncpg

PROJECTS = "/api/v1/projects"
TASKS = "/api/v1/tasks"


async def new_project(client: Any, owner: Any, name: str = "Launch", **extra: Any) -> dict[str, Any]:
    response = await client.post(PROJECTS, json={"name": name, **extra}, headers=owner.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def add_member(db: asyncpg.Connection, project: dict[str, Any], user: Any, role: str) -> None:
    """Arrange a membership directly (the invitation path has its own tests)."""
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)",
                     project["id"], user.id, role)


async def shared_project(client: Any, db: asyncpg.Connection, owner: Any, **members: Any) -> dict[str, Any]:
    """A project of ``owner`` with ``role=user`` members, e.g. ``shared_project(c, db, ada, editor=bob)``."""
    project = await new_project(client, owner)
    for role, user in members.items():
        await add_member(db, project, user, role)
    return project


async def new_task(client: Any, user: Any, project: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"title": "shared work", **fields}
    if project is not None:
        body["project_id"] = project["id"]
    response = await client.post(TASKS, json=body, headers=user.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def inbox_id(db: asyncpg.Connection, user: Any) -> int:
    return int(await db.fetchval("SELECT id FROM projects WHERE owner_id = $1 AND is_inbox", user.id))


def problem_shape(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a 404 says, minus the request id: a missing and a foreign id must say exactly the same."""
    return body["status"], body["title"], body["type"], body["detail"], body.get("errors")
