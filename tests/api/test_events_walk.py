"""Every change writes its event in its own transaction: a walk over every unsafe route of the JSON API.

``ROUTES`` classifies every unsafe route the app has; a new route fails ``test_every_unsafe_route_is_classified``
until someone decides whether it changes a project (then it needs an event and a step in a walk).
"""
from __future__ import annotations

import json
from typing import Any

import asyncpg

from shared.security import token_digest
from tests.project_helpers import PROJECTS, TASKS, new_project, new_task

# Walked by test_trash_restore_and_attachments_record_their_events.
TASK_DEPTH_ROUTES = {("POST", "/api/v1/tasks/{id}/attachments"), ("DELETE", "/api/v1/attachments/{id}"),
                     ("POST", "/api/v1/tasks/{id}/restore")}
# (method, canonical route) -> the event types it writes, or why it writes none.
API_ROUTES: dict[tuple[str, str], tuple[str, ...] | str] = {
    ("POST", "/api/v1/tasks"): ("task.created",),
    ("PATCH", "/api/v1/tasks/{id}"): ("task.updated", "task.completed"),
    ("DELETE", "/api/v1/tasks/{id}"): ("task.deleted",),
    ("POST", "/api/v1/tasks/{id}/restore"): ("task.restored",),
    ("POST", "/api/v1/tasks/{id}/attachments"): ("attachment.created",),
    ("DELETE", "/api/v1/attachments/{id}"): ("attachment.deleted",),
    ("POST", "/api/v1/tasks/{id}/comments"): ("comment.created",),
    ("PATCH", "/api/v1/comments/{id}"): ("comment.updated",),
    ("DELETE", "/api/v1/comments/{id}"): ("comment.deleted",),
    ("POST", "/api/v1/projects"): ("project.created",),
    ("PATCH", "/api/v1/projects/{id}"): ("project.updated",),
    ("DELETE", "/api/v1/projects/{id}"): ("project.deleted",),
    ("PATCH", "/api/v1/projects/{id}/members/{user_id}"): ("member.updated",),
    ("DELETE", "/api/v1/projects/{id}/members/{user_id}"): ("member.removed",),
    ("POST", "/api/v1/invitations/accept"): ("member.added",),
    ("POST", "/api/v1/projects/{id}/invitations"): "a pending invitation is not a member (no event type)",
    ("DELETE", "/api/v1/projects/{id}/invitations/{invitation_id}"): "a pending invitation is not a member",
    ("POST", "/api/v1/exports"): "a job of the caller's, no project change",
    ("POST", "/api/v1/reports"): "a job of the caller's, no project change",
    ("PATCH", "/api/v1/users/me"): "an account change (audit, not the feed)",
    ("PATCH", "/api/v1/admin/users/{id}"): "an account change (audit, not the feed)",
    ("POST", "/api/v1/webhooks"): "a subscription of the caller's (audit)",
    ("PATCH", "/api/v1/webhooks/{id}"): "a subscription of the caller's",
    ("DELETE", "/api/v1/webhooks/{id}"): "a subscription of the caller's (audit)",
    ("POST", "/api/v1/webhooks/{id}/ping"): "a test delivery",
}
PAGE_ROUTES: dict[tuple[str, str], tuple[str, ...] | str] = {
    ("POST", "/tasks"): ("task.created",),
    ("POST", "/tasks/{id}"): ("task.updated",),
    ("POST", "/tasks/{id}/status"): ("task.completed",),
    ("POST", "/tasks/{id}/delete"): ("task.deleted",),
    ("POST", "/tasks/{id}/subtasks"): ("task.created",),
    ("POST", "/tasks/{id}/attachments"): ("attachment.created",),
    ("POST", "/trash/{id}/restore"): ("task.restored",),
    ("POST", "/tasks/{id}/comments"): ("comment.created",),
    ("POST", "/comments/{id}/delete"): ("comment.deleted",),
    ("POST", "/projects"): ("project.created",),
    ("POST", "/projects/{id}"): ("project.updated",),
    ("POST", "/projects/{id}/delete"): ("project.deleted",),
    ("POST", "/projects/{id}/tasks"): ("task.created",),
    ("POST", "/projects/{id}/members/{user_id}"): ("member.updated",),
    ("POST", "/projects/{id}/members/{user_id}/remove"): ("member.removed",),
    ("POST", "/invitations/accept"): ("member.added",),
    ("POST", "/projects/{id}/invitations"): "a pending invitation is not a member",
    ("POST", "/projects/{id}/invitations/{invitation_id}/revoke"): "a pending invitation is not a member",
    ("POST", "/exports"): "a job of the caller's",
    ("POST", "/exports/report"): "a job of the caller's",
    ("POST", "/account"): "an account change (audit)",
    ("POST", "/account/sign-out-everywhere"): "sessions (audit)",
    ("POST", "/admin/users/{id}"): "an account change (audit)",
    ("POST", "/webhooks"): "a subscription of the caller's (audit)",
    ("POST", "/webhooks/{id}/ping"): "a test delivery",
    ("POST", "/webhooks/{id}/delete"): "a subscription of the caller's (audit)",
}
AUTH_PREFIXES = ("/api/v1/auth/", "/login", "/register", "/logout", "/verify-email", "/forgot-password",
                 "/reset-password")
UNSAFE = {"POST", "PATCH", "PUT", "DELETE"}


def unsafe_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        if route.method not in UNSAFE:
            continue
        path = route.resource.canonical
        if not path.startswith(AUTH_PREFIXES):  # sessions and tokens: audit, never the feed
            found.add((route.method, path))
    return found


async def events_of(db: asyncpg.Connection, after: int = 0) -> list[asyncpg.Record]:
    return await db.fetch("SELECT id, type, project_id, task_id, actor_id, data::text AS data, also "
                          "FROM events WHERE id > $1 ORDER BY id", after)


class Walk:
    """Calls routes and checks that each wrote exactly the events it should, in the same transaction."""

    def __init__(self, db: asyncpg.Connection) -> None:
        self.db, self.last, self.walked = db, 0, set()

    async def step(self, route: tuple[str, str], response: Any, *types: str, status: int) -> list[asyncpg.Record]:
        assert response.status == status, (route, await response.text())
        rows = await events_of(self.db, self.last)
        assert [r["type"] for r in rows] == list(types), route
        self.last = max([self.last, *(r["id"] for r in rows)])
        self.walked.add(route)
        return rows


async def test_every_unsafe_route_is_classified(client: Any) -> None:
    assert unsafe_routes(client.server.app) == set(API_ROUTES) | set(PAGE_ROUTES)


async def test_every_api_write_records_its_event(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, bob, cy = await make_user(name="Ada"), await make_user(name="Bob"), await make_user(email="cy@example.com")
    walk = Walk(db)
    created = await client.post(PROJECTS, json={"name": "Garden"}, headers=ada.headers)
    [event] = await walk.step(("POST", "/api/v1/projects"), created, "project.created", status=201)
    project = await created.json()
    assert json.loads(event["data"]) == {k: v for k, v in project.items() if k != "role"}
    assert (event["project_id"], event["actor_id"], event["task_id"]) == (project["id"], ada.id, None)
    pid = project["id"]
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'editor')", pid, bob.id)
    response = await client.post(TASKS, json={"title": "Roses", "project_id": pid}, headers=bob.headers)
    [event] = await walk.step(("POST", "/api/v1/tasks"), response, "task.created", status=201)
    task = await response.json()
    assert json.loads(event["data"]) == task and event["task_id"] == task["id"] and event["actor_id"] == bob.id
    url = f"{TASKS}/{task['id']}"
    response = await client.patch(url, json={"title": "Red roses"}, headers=bob.headers)
    [event] = await walk.step(("PATCH", "/api/v1/tasks/{id}"), response, "task.updated", status=200)
    assert json.loads(event["data"]) == await response.json()
    response = await client.patch(url, json={"status": "done"}, headers=bob.headers)
    await walk.step(("PATCH", "/api/v1/tasks/{id}"), response, "task.completed", status=200)
    response = await client.patch(url, json={}, headers=bob.headers)  # no change, no event
    await walk.step(("PATCH", "/api/v1/tasks/{id}"), response, status=200)
    response = await client.post(f"{url}/comments", json={"body": "Water daily"}, headers=bob.headers)
    [event] = await walk.step(("POST", "/api/v1/tasks/{id}/comments"), response, "comment.created", status=201)
    comment = await response.json()
    assert json.loads(event["data"]) == comment and event["task_id"] == task["id"]
    response = await client.patch(f"/api/v1/comments/{comment['id']}", json={"body": "Twice"}, headers=bob.headers)
    await walk.step(("PATCH", "/api/v1/comments/{id}"), response, "comment.updated", status=200)
    response = await client.delete(f"/api/v1/comments/{comment['id']}", headers=ada.headers)
    [event] = await walk.step(("DELETE", "/api/v1/comments/{id}"), response, "comment.deleted", status=204)
    assert json.loads(event["data"]) == {"id": comment["id"]}
    response = await client.delete(url, headers=bob.headers)
    [event] = await walk.step(("DELETE", "/api/v1/tasks/{id}"), response, "task.deleted", status=204)
    assert json.loads(event["data"]) == {"id": task["id"]} and event["project_id"] == pid
    response = await client.patch(f"{PROJECTS}/{pid}", json={"name": "Big garden"}, headers=ada.headers)
    [event] = await walk.step(("PATCH", "/api/v1/projects/{id}"), response, "project.updated", status=200)
    assert json.loads(event["data"])["name"] == "Big garden"
    members = f"{PROJECTS}/{pid}/members"
    response = await client.patch(f"{members}/{bob.id}", json={"role": "admin"}, headers=ada.headers)
    [event] = await walk.step(("PATCH", "/api/v1/projects/{id}/members/{user_id}"), response, "member.updated",
                              status=200)
    assert json.loads(event["data"])["role"] == "admin"
    response = await client.patch(f"{members}/{bob.id}", json={"role": "owner"}, headers=ada.headers)
    rows = await walk.step(("PATCH", "/api/v1/projects/{id}/members/{user_id}"), response, "member.updated",
                           "member.updated", status=200)
    assert sorted((json.loads(r["data"])["user"]["id"], json.loads(r["data"])["role"]) for r in rows) == sorted(
        [(ada.id, "admin"), (bob.id, "owner")])
    token = "invitation-token-for-the-walk"
    await db.execute("INSERT INTO project_invitations (project_id, email, role, token_hash, invited_by, expires_at) "
                     "VALUES ($1, $2, 'viewer', $3, $4, now() + interval '1 day')", pid, cy.email,
                     token_digest(token), bob.id)
    response = await client.post("/api/v1/invitations/accept", json={"token": token}, headers=cy.headers)
    [event] = await walk.step(("POST", "/api/v1/invitations/accept"), response, "member.added", status=200)
    assert json.loads(event["data"])["user"]["id"] == cy.id and event["actor_id"] == cy.id
    response = await client.delete(f"{members}/{cy.id}", headers=bob.headers)
    [event] = await walk.step(("DELETE", "/api/v1/projects/{id}/members/{user_id}"), response, "member.removed",
                              status=204)
    assert event["also"] == [cy.id] and json.loads(event["data"])["role"] == "viewer"
    response = await client.delete(f"{PROJECTS}/{pid}", headers=bob.headers)
    [event] = await walk.step(("DELETE", "/api/v1/projects/{id}"), response, "project.deleted", status=204)
    assert sorted(event["also"]) == sorted([ada.id, bob.id])
    assert walk.walked == {route for route, kind in API_ROUTES.items() if isinstance(kind, tuple)} - TASK_DEPTH_ROUTES


async def test_a_refused_change_leaves_no_event(client: Any, make_user: Any, db: asyncpg.Connection) -> None:
    ada, eve = await make_user(), await make_user()
    project = await new_project(client, ada)
    task = await new_task(client, ada, project)
    before = await db.fetchval("SELECT count(*) FROM events")
    assert (await client.patch(f"{TASKS}/{task['id']}", json={"title": "x"}, headers=eve.headers)).status == 404
    stale = await client.patch(f"{TASKS}/{task['id']}", json={"title": "x"}, headers={**ada.headers,
                                                                                      "If-Match": '"0-0"'})
    assert stale.status == 412
    bad = await client.post(TASKS, json={"title": "t", "project_id": project["id"], "assignee_id": eve.id},
                            headers=ada.headers)
    assert bad.status == 422
    assert await db.fetchval("SELECT count(*) FROM events") == before


async def test_an_event_rolls_back_with_its_change(database: Any, make_user: Any, db: asyncpg.Connection) -> None:
    from shared import tasks

    ada = await make_user()
    async with database.write.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await tasks.create_task(conn, owner_id=ada.id, data={"title": "never"})
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        await transaction.rollback()
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_trash_restore_and_attachments_record_their_events(client: Any, make_user: Any,
                                                                 db: asyncpg.Connection) -> None:
    from aiohttp import FormData

    ada = await make_user(name="Ada")
    project = await new_project(client, ada)
    task = await new_task(client, ada, project)
    url = f"{TASKS}/{task['id']}"
    walk = Walk(db)
    walk.last = await db.fetchval("SELECT coalesce(max(id), 0) FROM events")
    form = FormData()
    form.add_field("file", b"seed list", filename="seeds.txt", content_type="text/plain")
    response = await client.post(f"{url}/attachments", data=form, headers=ada.headers)
    [event] = await walk.step(("POST", "/api/v1/tasks/{id}/attachments"), response, "attachment.created", status=201)
    attachment = await response.json()
    assert json.loads(event["data"]) == attachment
    assert (event["project_id"], event["task_id"], event["actor_id"]) == (project["id"], task["id"], ada.id)
    response = await client.delete(f"/api/v1/attachments/{attachment['id']}", headers=ada.headers)
    [event] = await walk.step(("DELETE", "/api/v1/attachments/{id}"), response, "attachment.deleted", status=204)
    assert json.loads(event["data"]) == {"id": attachment["id"], "task_id": task["id"]}
    response = await client.delete(url, headers=ada.headers)
    await walk.step(("DELETE", "/api/v1/tasks/{id}"), response, "task.deleted", status=204)
    response = await client.post(f"{url}/restore", headers=ada.headers)
    [event] = await walk.step(("POST", "/api/v1/tasks/{id}/restore"), response, "task.restored",
                              status=response.status)
    assert response.status in (200, 204) and event["project_id"] == project["id"] and event["task_id"] == task["id"]
    assert TASK_DEPTH_ROUTES <= walk.walked
