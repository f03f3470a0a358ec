"""The project pages at the HTTP level, without JavaScript: the same rights as the API, and what a role
may not do is not offered."""
from __future__ import annotations

import re

from tests.export_helpers import run_jobs
from tests.helpers import mailed_tokens
from tests.pages.test_pages_session import csrf_of, sign_in

HTML = {"Accept": "text/html"}


async def signed_in(client, make_user, **kwargs):
    user = await make_user(**kwargs)
    await sign_in(client, user.email)
    page = await client.get("/projects")
    return user, csrf_of(await page.text())


async def test_create_a_project_add_a_task_assign_and_comment(client, make_user, db, settings, stack):
    bob = await make_user(name="Bob")
    ada, csrf = await signed_in(client, make_user, name="Ada")
    listing = await client.get("/projects")
    assert listing.status == 200 and "Inbox" in await listing.text()
    created = await client.post("/projects", data={"csrf_token": csrf, "name": "Garden", "description": "weeds"},
                                allow_redirects=False)
    assert created.status == 303
    url = created.headers["Location"]
    project_id = int(url.rsplit("/", 1)[1])
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'editor')",
                     project_id, bob.id)
    assert (await client.post(f"{url}/tasks", data={"csrf_token": csrf, "title": "Plant roses"})).status == 200
    page = await (await client.get(url)).text()
    assert "Plant roses" in page and "Invite someone" in page and "Delete the project" in page
    task_id = await db.fetchval("SELECT id FROM tasks WHERE title = 'Plant roses'")
    task_page = await (await client.get(f"/tasks/{task_id}")).text()
    assert "Garden" in task_page and 'name="assignee_id"' in task_page and "No comments yet." in task_page
    etag = task_page.split('name="etag" value="')[1].split('"')[0].replace("&#34;", '"')
    form = {"csrf_token": csrf, "etag": etag, "title": "Plant roses", "status": "todo", "priority": "medium",
            "due_at": "", "tags": "", "description": "", "tz": "UTC", "assignee_id": str(bob.id),
            "project_id": str(project_id)}
    assert (await client.post(f"/tasks/{task_id}", data=form)).status == 200
    assert await db.fetchval("SELECT assignee_id FROM tasks WHERE id = $1", task_id) == bob.id
    commented = await client.post(f"/tasks/{task_id}/comments", data={"csrf_token": csrf, "body": "Use compost"})
    assert commented.status == 200 and "Use compost" in await commented.text()
    too_long = await client.post(f"/tasks/{task_id}/comments", data={"csrf_token": csrf, "body": "x" * 10001})
    assert "Comment not added" in await too_long.text()
    assert await db.fetchval("SELECT count(*) FROM comments") == 1
    await run_jobs(settings)
    assert sorted(m["Subject"] for m in stack.smtp.messages()) == [
        "Assigned to you: Plant roses", "New comment on Plant roses"]


async def test_a_viewer_is_not_offered_what_they_may_not_do(client, make_user, db):
    owner = await make_user()
    viewer, csrf = await signed_in(client, make_user)
    project_id = await db.fetchval("INSERT INTO projects (name, owner_id) VALUES ('Shared', $1) RETURNING id", owner.id)
    await db.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'owner'), "
                     "($1, $3, 'viewer')", project_id, owner.id, viewer.id)
    task_id = await db.fetchval("INSERT INTO tasks (owner_id, project_id, title) VALUES ($1, $2, 'look only') "
                                "RETURNING id", owner.id, project_id)
    page = await (await client.get(f"/projects/{project_id}")).text()
    assert "look only" in page and "Leave the project" in page
    for offered in ("Invite someone", "Settings", "Delete the project", "Add task", "Change</button>"):
        assert offered not in page, offered
    task_page = await (await client.get(f"/tasks/{task_id}")).text()
    assert "Save changes" not in task_page and "Delete…" not in task_page and 'name="body"' not in task_page
    # Posting anyway gets the API's answers, and changes nothing.
    refused = await client.post(f"/projects/{project_id}", data={"csrf_token": csrf, "name": "Mine"})
    assert refused.status == 403 and "admin role" in await refused.text()
    refused = await client.post(f"/tasks/{task_id}/comments", data={"csrf_token": csrf, "body": "hi"})
    assert refused.status == 403
    assert await db.fetchval("SELECT name FROM projects WHERE id = $1", project_id) == "Shared"
    left = await client.post(f"/projects/{project_id}/members/{viewer.id}/remove", data={"csrf_token": csrf},
                             allow_redirects=False)
    assert left.status == 303 and left.headers["Location"] == "/projects"
    assert (await client.get(f"/projects/{project_id}", headers=HTML)).status == 404


async def test_a_non_member_gets_404_pages(client, make_user, db):
    owner = await make_user()
    _, csrf = await signed_in(client, make_user)
    project_id = await db.fetchval("SELECT id FROM projects WHERE owner_id = $1", owner.id)
    for path in (f"/projects/{project_id}", "/projects/9000000"):
        response = await client.get(path, headers=HTML)
        assert response.status == 404
    for path in (f"/projects/{project_id}", f"/projects/{project_id}/invitations", f"/projects/{project_id}/delete"):
        response = await client.post(path, data={"csrf_token": csrf, "name": "x", "email": "a@example.com",
                                                 "role": "viewer"}, headers=HTML)
        assert response.status == 404, path


async def test_an_invitation_link_lands_the_invitee_in_the_project(aiohttp_client, settings, make_user, db, stack):
    from web.app import create_app

    owner_client = await aiohttp_client(create_app(settings))
    ada = await make_user()
    await sign_in(owner_client, ada.email)
    csrf = csrf_of(await (await owner_client.get("/projects")).text())
    created = await owner_client.post("/projects", data={"csrf_token": csrf, "name": "Book club"},
                                      allow_redirects=False)
    url = created.headers["Location"]
    sent = await owner_client.post(f"{url}/invitations", data={"csrf_token": csrf, "email": "bea@example.com",
                                                                "role": "editor"})
    assert sent.status == 200 and "bea@example.com" in await sent.text()  # the pending list
    await run_jobs(settings)
    [token] = mailed_tokens(stack, "/invitations/accept")
    link = f"/invitations/accept?token={token}"
    bea_client = await aiohttp_client(create_app(settings))
    first = await bea_client.get(link, allow_redirects=False)  # signed out: to the login page, and back after
    assert first.status == 303 and first.headers["Location"].startswith("/login?next=/invitations/accept")
    bea = await make_user("bea@example.com")
    await sign_in(bea_client, bea.email)
    page = await bea_client.get(link)
    text = await page.text()
    assert page.status == 200 and "Join the project" in text
    joined = await bea_client.post("/invitations/accept", data={"csrf_token": csrf_of(text), "token": token},
                                   allow_redirects=False)
    assert joined.status == 303 and joined.headers["Location"] == url
    assert "Book club" in await (await bea_client.get(url)).text()
    again = await bea_client.post("/invitations/accept", data={"csrf_token": csrf_of(text), "token": token})
    assert again.status == 404 and re.search(r"unknown, already used or revoked", await again.text())


async def test_the_account_page_turns_collaboration_mails_off_and_on(client, make_user, db):
    user, csrf = await signed_in(client, make_user)
    assert "Email me when a task is assigned" in await (await client.get("/account")).text()
    off = await client.post("/account", data={"csrf_token": csrf, "action": "notifications"})
    assert off.status == 200 and "are off" in await off.text()
    assert await db.fetchval("SELECT email_notifications FROM users WHERE id = $1", user.id) is False
    on = await client.post("/account", data={"csrf_token": csrf, "action": "notifications",
                                             "email_notifications": "on"})
    assert "are on" in await on.text()
    assert await db.fetchval("SELECT email_notifications FROM users WHERE id = $1", user.id) is True
