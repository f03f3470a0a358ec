"""Every change made through the HTML pages writes the same event as through the API (no JavaScript)."""
from __future__ import annotations

import json

from aiohttp import FormData

from shared.security import token_digest
from tests.api.test_events_walk import PAGE_ROUTES, Walk
from tests.pages.test_pages_session import csrf_of, sign_in


async def test_every_page_write_records_its_event(client, make_user, db):
    bob = await make_user(name="Bob")
    cy = await make_user(email="cy@example.com")
    ada = await make_user(name="Ada")
    await sign_in(client, ada.email)
    csrf = csrf_of(await (await client.get("/projects")).text())
    walk = Walk(db)

    async def post(route, url, *types, **form):
        response = await client.post(url, data={"csrf_token": csrf, **form})
        return await walk.step(("POST", route), response, *types, status=200)

    [event] = await post("/projects", "/projects", "project.created", name="Garden")
    pid = event["project_id"]
    assert event["actor_id"] == ada.id and json.loads(event["data"])["name"] == "Garden"
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'editor'), "
                     "($1, $3, 'viewer')", pid, bob.id, cy.id)
    await post("/projects/{id}", f"/projects/{pid}", "project.updated", name="Big garden", description="")
    [event] = await post("/projects/{id}/tasks", f"/projects/{pid}/tasks", "task.created", title="Roses")
    task_id = event["task_id"]
    [event] = await post("/tasks", "/tasks", "task.created", title="Mine", tz="UTC")
    own_task = event["task_id"]
    task_page = await (await client.get(f"/tasks/{task_id}")).text()
    etag = task_page.split('name="etag" value="')[1].split('"')[0].replace("&#34;", '"')
    await post("/tasks/{id}", f"/tasks/{task_id}", "task.updated", etag=etag, title="Red roses", status="todo",
               priority="high", due_at="", tags="", description="", tz="UTC", assignee_id="",
               project_id=str(pid))
    await post("/tasks/{id}/status", f"/tasks/{task_id}/status", "task.completed", status="done")
    [event] = await post("/tasks/{id}/comments", f"/tasks/{task_id}/comments", "comment.created", body="Water")
    comment_id = json.loads(event["data"])["id"]
    await post("/comments/{id}/delete", f"/comments/{comment_id}/delete", "comment.deleted", task_id=str(task_id))
    await post("/tasks/{id}/delete", f"/tasks/{own_task}/delete", "task.deleted")
    [event] = await post("/trash/{id}/restore", f"/trash/{own_task}/restore", "task.restored")
    assert event["task_id"] == own_task
    [event] = await post("/tasks/{id}/subtasks", f"/tasks/{task_id}/subtasks", "task.created", title="Prune")
    assert json.loads(event["data"])["parent_id"] == task_id
    form = FormData()
    form.add_field("file", b"seed list", filename="seeds.txt", content_type="text/plain")
    response = await client.post(f"/tasks/{task_id}/attachments", params={"csrf_token": csrf}, data=form)
    [event] = await walk.step(("POST", "/tasks/{id}/attachments"), response, "attachment.created", status=200)
    assert json.loads(event["data"])["filename"] == "seeds.txt"
    [event] = await post("/projects/{id}/members/{user_id}", f"/projects/{pid}/members/{bob.id}", "member.updated",
                         role="admin")
    assert json.loads(event["data"])["role"] == "admin"
    [event] = await post("/projects/{id}/members/{user_id}/remove", f"/projects/{pid}/members/{cy.id}/remove",
                         "member.removed")
    assert event["also"] == [cy.id]
    token = "page-walk-invitation"
    await db.execute("INSERT INTO project_invitations (project_id, email, role, token_hash, invited_by, expires_at) "
                     "VALUES ($1, $2, 'viewer', $3, $4, now() + interval '1 day')", pid, cy.email,
                     token_digest(token), ada.id)
    await client.post("/logout", data={"csrf_token": csrf})
    await sign_in(client, cy.email)
    csrf = csrf_of(await (await client.get("/projects")).text())
    [event] = await post("/invitations/accept", "/invitations/accept", "member.added", token=token)
    assert event["actor_id"] == cy.id
    await client.post("/logout", data={"csrf_token": csrf})
    await sign_in(client, ada.email)
    csrf = csrf_of(await (await client.get("/projects")).text())
    [event] = await post("/projects/{id}/delete", f"/projects/{pid}/delete", "project.deleted")
    assert sorted(event["also"]) == sorted([ada.id, bob.id, cy.id])
    assert walk.walked == {route for route, kind in PAGE_ROUTES.items() if isinstance(kind, tuple)}
